"""Database sources: PostgreSQL through ADBC, MariaDB/MySQL through connectorx.

An extraction first asks the server for its new state — the newest cursor value, and the
count and sum of the cursor values inside the lag window below it — then streams the rows
at or past the old watermark minus the lag once, from the driver through the step's
DuckDB session (types Delta cannot hold made exact, personal data pseudonymized) into a
Delta merge by primary key whose commit carries that state and an app transaction that
numbers the extraction. ``discover`` asks the same questions before planning, so a run
with nothing new is a no-op.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gristmill import failpoints
from gristmill.definitions.sources.database import DatabaseSource, expand, placeholders
from gristmill.errors import (
    DefinitionError,
    GristmillError,
    SourceReadError,
    SourceUnavailableError,
)
from gristmill.execution.sql import q
from gristmill.planning.planner import SourceOffer, WriteMode

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

    from gristmill.execution.steps import StepContext
    from gristmill.storage.catalog import Materialization
    from gristmill.storage.lake import Lake

STATE_KEY = "source"
"""Where a materialization's stats keep the source's state."""
RAW = "__gm_extracted"
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class State:
    """How far a database source got: its newest cursor value, the rows inside the lag
    window below it (count and sum of cursor values), and how many extractions were
    committed."""

    watermark: Any
    window_rows: int
    sequence: int
    window_sum: str | None = None
    """The sum of the cursor values (as seconds, for times) in the lag window: a late
    commit that moves a row's cursor inside the window changes it, not the count."""

    def to_json(self) -> dict[str, Any]:
        kind, text = _encode(self.watermark)
        return {
            "watermark": text,
            "watermark_type": kind,
            "window_rows": self.window_rows,
            "window_sum": self.window_sum,
            "sequence": self.sequence,
        }

    @classmethod
    def of(cls, m: Materialization | None) -> State | None:
        data = (m.stats or {}).get(STATE_KEY) if m is not None else None
        if not data:
            return None
        return cls(
            _decode(data.get("watermark_type"), data.get("watermark")),
            int(data.get("window_rows") or 0),
            int(data.get("sequence") or 0),
            data.get("window_sum"),
        )


# ---- discover -------------------------------------------------------------------------


def discover(source: DatabaseSource, last: Materialization | None) -> SourceOffer:
    """Whether the server holds rows the last extraction did not read."""
    if source.captures:
        from gristmill.execution.sources import cdc

        return cdc.discover(source, last)
    state = State.of(last)
    if not source.incremental:
        return SourceOffer(news="a source without a cursor is read whole on every run")
    cursor = source.cursor[0]
    if state is None:
        return SourceOffer(news="no watermark yet: reading everything")
    if state.watermark is None:  # the table was empty: anything there now?
        newest = _select_from(source).select(_max(_column(cursor)), append=False)
        with _connection(source) as connection:
            (high,) = connection.one(newest.sql(dialect=_DIALECTS[source.dialect]))
        if high is None:
            return SourceOffer(unchanged="no rows yet")
        return SourceOffer(news=f"first rows (up to {cursor} {_show(high)})")
    column = _column(cursor)
    dialect = _DIALECTS[source.dialect]
    newest = _select_from(source).select(_max(column), append=False)
    in_window = _window(source, column, _lower_bound(source, state.watermark))
    with _connection(source) as connection:
        (high,) = connection.one(newest.sql(dialect=dialect))
        window, total = connection.one(in_window.sql(dialect=dialect))
    shown = _show(state.watermark)
    if high is not None and _newer(high, state.watermark):
        return SourceOffer(news=f"rows past {cursor} {shown} (up to {_show(high)})")
    if int(window or 0) != state.window_rows:
        change = int(window or 0) - state.window_rows
        return SourceOffer(news=f"{change:+d} row(s) within the lag below {cursor} {shown}")
    if state.window_sum is not None and _sum_text(total) != state.window_sum:
        return SourceOffer(news=f"rows changed within the lag below {cursor} {shown}")
    return SourceOffer(unchanged=f"no rows past {cursor} {shown}")


# ---- extract --------------------------------------------------------------------------


def extract(ctx: StepContext, source: DatabaseSource) -> Materialization:
    """Read the increment (everything on the first run or a full refresh) and commit it.

    The new state is asked of the server first (its newest cursor value, the rows in the
    lag window below it), so that it rides in the commit of rows streamed once from the
    server into the table. On PostgreSQL both reads share one snapshot; on MariaDB a row
    that commits between them is read now and again next time (merged: counted once)."""
    from gristmill.execution.writer import WriteRequest, write

    merging = ctx.planned.mode is WriteMode.MERGE and ctx.previous is not None
    extra: dict[str, Any] = {}
    transactions: dict[str, int] = {}
    if source.captures:
        from gristmill.execution.sources import cdc

        if merging and cdc.LogState.of(ctx.previous) is not None:
            return cdc.extract(ctx, source)
        last = State.of(ctx.previous)
        # before the slot is made: a refused extraction leaves the server as it was
        _refuse_a_second_writer(ctx.lake, source, (last.sequence if last else 0) + 1)
        started = cdc.start(source)  # the slot first: the read below misses no change
        extra[cdc.STATE_KEY] = started.to_json()
        transactions[cdc.app_id(source)] = started.position
        merging = False
    state = State.of(ctx.previous) if merging else None
    low = None
    if state is not None and state.watermark is not None and source.incremental:
        low = _lower_bound(source, state.watermark)
    with _connection(source) as connection:
        new_state = _server_state(connection, source, state, State.of(ctx.previous))
        _refuse_a_second_writer(ctx.lake, source, new_state.sequence)
        columns = connection.table_columns(source)
        casts = {name: kind for name, kind in columns if kind is not None}
        text = [name for name in casts] if connection.DECIMALS_AS_TEXT else []
        query = _read_query(source, low, [n for n, _ in columns], text)
        ctx.session.register(
            RAW, connection.stream(query.sql(dialect=_DIALECTS[source.dialect]), source.chunk_rows)
        )
        relation = _write_relation(ctx, source, merging, casts)
        failpoints.hit("after_extract", source.name)
        template = replace(
            ctx.template,
            stats={**ctx.template.stats, STATE_KEY: new_state.to_json(), **extra},
        )
        request = WriteRequest(
            table=source.name,
            relation=relation,
            contract=source.contract,
            mode=WriteMode.MERGE if merging else WriteMode.OVERWRITE,
            template=template,
            keep_only_declared=bool(source.contract.columns),
            merge_keys=source.primary_key,
            delete_flag=source.soft_delete if merging else None,
            transactions={_app_id(source): new_state.sequence, **transactions},
            no_stats=tuple(c for c, _ in source.pii),
        )
        try:
            return write(ctx.session, ctx.lake, request)
        except GristmillError:
            raise
        except Exception as exc:  # the server or the stream failed midway
            raise connection.failure(exc) from None


def _refuse_a_second_writer(lake: Lake, source: DatabaseSource, sequence: int) -> None:
    """The lake's own count of extractions must be the one this one follows; more means
    another process extracted meanwhile (this one's rows would be merged twice)."""
    committed = lake.transaction_version(source.name, _app_id(source))
    if committed is not None and committed >= sequence:
        from gristmill.errors import RunInProgressError

        raise RunInProgressError(
            f"database source {source.name!r}: extraction {committed} is already in the "
            f"lake and this one would be number {sequence}: another process extracted meanwhile",
            hint="run again: it plans from what is in the lake now",
        )


def _server_state(
    connection: _Connection, source: DatabaseSource, old: State | None, last: State | None
) -> State:
    """The state this extraction reaches: the server's newest cursor value and the rows
    within the lag below it (never behind ``old``); ``last``: the last extraction's, whose
    number this one follows."""
    sequence = (last.sequence if last else 0) + 1
    if not source.incremental:
        return State(None, 0, sequence)
    column = _column(source.cursor[0])
    dialect = _DIALECTS[source.dialect]
    newest = _select_from(source).select(_max(column), append=False)
    (high,) = connection.one(newest.sql(dialect=dialect))
    if high is None:  # nothing there: the old watermark stands
        return State(old.watermark if old else None, old.window_rows if old else 0, sequence)
    if old is not None and old.watermark is not None and not _newer(high, old.watermark):
        high = old.watermark
    in_window = _window(source, column, _lower_bound(source, high))
    window, total = connection.one(in_window.sql(dialect=dialect))
    return State(high, int(window or 0), sequence, _sum_text(total))


def _write_relation(
    ctx: StepContext, source: DatabaseSource, merging: bool, casts: Mapping[str, str]
) -> str:
    """The rows to write, as a view over the server's stream (read once, by the writer):
    declared DECIMAL types back, types Delta cannot hold as text or a wider type, one row
    per key (the newest by cursor) when a query may repeat a key (a table's key is unique
    in one snapshot), without soft-deleted rows on a full load (a merge deletes them)."""
    types = dict(ctx.session.columns(RAW))
    _require_columns(source, types)
    replaced = []
    for column, kind in types.items():
        target = casts.get(column) or _DELTA_SAFE.get(kind.split("(")[0].upper())
        if target is not None:
            replaced.append(f"CAST({q(column)} AS {target}) AS {q(column)}")
    columns = f"* REPLACE ({', '.join(replaced)})" if replaced else "*"
    view = RAW + "_rows"
    where = ""
    if source.soft_delete and not merging:
        where = f" WHERE {q(source.soft_delete)} IS NULL"
    sql = f"SELECT {columns} FROM {q(RAW)}{where}"
    if source.primary_key and source.cursor and source.query is not None:
        keys = ", ".join(q(k) for k in source.primary_key)
        order = ", ".join(f"{q(c)} DESC" for c in source.cursor)
        sql += f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
    ctx.session.define(view, sql)
    from gristmill.definitions.config import PiiSettings
    from gristmill.execution.sources.pii import pseudonymize

    return pseudonymize(ctx.session, source, view, ctx.pii or PiiSettings(), ctx.root)


_DELTA_SAFE = {
    "TIME": "VARCHAR",
    "TIMETZ": "VARCHAR",
    "TIME WITH TIME ZONE": "VARCHAR",
    "INTERVAL": "VARCHAR",
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INTEGER",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20, 0)",
    "HUGEINT": "VARCHAR",
    "UHUGEINT": "VARCHAR",
}
"""DuckDB types a Delta table cannot hold, as the nearest exact type it can (a time of
day and an interval as their text, an unsigned integer as a wider signed one)."""


def _require_columns(source: DatabaseSource, present: Mapping[str, str]) -> None:
    for setting, names in (
        ("primary_key", source.primary_key),
        ("cursor", source.cursor),
        ("deletes", (source.soft_delete,) if source.soft_delete else ()),
    ):
        missing = [n for n in names if n not in present]
        if missing:
            raise SourceReadError(
                f"database source {source.name!r}: {setting}= names {missing[0]!r}, which "
                "the rows read do not have",
                location=source.location,
                hint="its columns: " + ", ".join(present),
            )


def _app_id(source: DatabaseSource) -> str:
    return f"gristmill.source.{source.name}"


# ---- SQL for the server ---------------------------------------------------------------

_DIALECTS = {"postgresql": "postgres", "mysql": "mysql"}


def _select_from(source: DatabaseSource) -> exp.Select:
    from sqlglot import exp

    dialect = _DIALECTS[source.dialect]
    if source.table is not None:
        table = exp.to_table(source.table, dialect=dialect)
        for part in table.parts:
            part.set("quoted", True)
        relation: exp.Expression = table
    else:
        from sqlglot import parse_one

        try:
            inner = parse_one(source.query or "", dialect=dialect)
        except Exception as exc:  # sqlglot's ParseError and kin: the user's query
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
            raise DefinitionError(
                f"database source {source.name!r}: its query does not parse: {plain}",
                location=source.location,
            ) from None
        relation = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("gm_q")))
    return exp.select(exp.Star()).from_(relation)


def _read_query(
    source: DatabaseSource, low: Any, columns: list[str], text: list[str]
) -> exp.Select:
    """The read: the declared columns (or all), those in ``text`` read as text (exact
    decimals where the driver would round them), at or past the lower bound."""
    from sqlglot import exp

    query = _select_from(source)
    wanted = list(source.contract.columns) or (columns if text else [])
    if wanted:
        query = query.select(
            *[
                exp.cast(_column(c), "CHAR").as_(c, quoted=True) if c in text else _column(c)
                for c in wanted
            ],
            append=False,
        )
    if low is not None:
        bound = _literal(low, source.dialect)
        # at or past: rows that share the watermark's value (a tie) are read again, and
        # merged once, never missed
        query = query.where(exp.GTE(this=_column(source.cursor[0]), expression=bound))
    return query


def _column(name: str) -> exp.Column:
    from sqlglot import exp

    return exp.column(name, quoted=True)


def _max(column: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    return exp.Max(this=column)


def _window(source: DatabaseSource, column: exp.Expression, low: Any) -> exp.Select:
    """The rows at or past ``low``: their count, and the sum of their cursor values (as
    epoch seconds for times and dates). A WHERE, not a filtered aggregate: the server
    reads the window through the cursor's index instead of the whole table."""
    from sqlglot import exp

    above = exp.GTE(this=column, expression=_literal(low, source.dialect))
    summed: exp.Expression = exp.Sum(this=column.copy())
    if isinstance(low, str):  # text cursors: no sum (PostgreSQL has none), the count alone
        summed = exp.null()
    elif isinstance(low, datetime | date):
        summed = exp.Sum(
            this=exp.Anonymous(this="UNIX_TIMESTAMP", expressions=[column.copy()])
            if source.dialect == "mysql"
            else exp.Extract(this=exp.var("EPOCH"), expression=column.copy())
        )
    counted = exp.Count(this=exp.Star())
    return _select_from(source).select(counted, summed, append=False).where(above)


def _sum_text(total: Any) -> str | None:
    """A window sum as stored: exact text (numeric on both servers), None for none."""
    if total is None:
        return None
    if isinstance(total, float):
        return repr(total)
    return str(Decimal(str(total)).normalize())


def _literal(value: Any, dialect: str = "postgresql") -> exp.Expression:
    from sqlglot import exp

    if dialect == "mysql" and isinstance(value, datetime):
        # a string compares at full precision; CAST(… AS DATETIME) drops the microseconds
        if value.tzinfo is not None:
            from datetime import UTC

            value = value.astimezone(UTC).replace(tzinfo=None)
        return exp.Literal.string(value.strftime("%Y-%m-%d %H:%M:%S.%f"))

    if isinstance(value, bool) or value is None:
        raise SourceReadError(f"a cursor value {value!r} cannot bound a read")
    if isinstance(value, int | float | Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # compared in UTC on both servers
            from datetime import UTC

            return exp.cast(
                exp.Literal.string(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")),
                exp.DataType.build("timestamptz"),
            )
        return exp.cast(
            exp.Literal.string(value.strftime("%Y-%m-%d %H:%M:%S.%f")),
            exp.DataType.build("timestamp"),
        )
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("date"))
    return exp.Literal.string(str(value))


def _lower_bound(source: DatabaseSource, watermark: Any) -> Any:
    if not source.lag:
        return watermark
    if isinstance(watermark, datetime | date):
        return watermark - source.lag
    raise SourceReadError(
        f"database source {source.name!r}: lag= needs a time cursor, and "
        f"{source.cursor[0]!r} holds {type(watermark).__name__} values",
        location=source.location,
        hint="remove lag= (a number cursor is assigned in commit order only with care), "
        "or use a timestamp cursor",
    )


def _newer(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:  # a naive and an aware time, say: compare as UTC
        return str(a) > str(b)


def _show(value: Any) -> str:
    return value.isoformat(sep=" ") if isinstance(value, datetime) else repr(value)


def _encode(value: Any) -> tuple[str, Any]:
    if value is None:
        return "none", None
    if isinstance(value, datetime):
        return "timestamp", value.isoformat()
    if isinstance(value, date):
        return "date", value.isoformat()
    if isinstance(value, bool):
        return "text", str(value)
    if isinstance(value, int):
        return "int", value
    if isinstance(value, float):
        return "float", value
    if isinstance(value, Decimal):
        return "decimal", str(value)
    return "text", str(value)


def _decode(kind: str | None, value: Any) -> Any:
    if value is None or kind in (None, "none"):
        return None
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


# ---- connections ----------------------------------------------------------------------


class _Connection:
    """One server connection: small queries, a streamed read, errors without secrets."""

    def __init__(self, source: DatabaseSource, url: str, secrets: list[str]) -> None:
        self.source = source
        self.url = url
        self.secrets = secrets
        parts = urlsplit(source.url)
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or _PORTS[source.dialect]}"

    def one(self, sql: str) -> tuple[Any, ...]:
        raise NotImplementedError

    DECIMALS_AS_TEXT = False
    """Whether the read must ask for DECIMAL columns as text (the driver rounds them)."""

    def table_columns(self, source: DatabaseSource) -> list[tuple[str, str | None]]:
        """A table source's columns in order, each with the DuckDB type its values are cast
        to after the read (its declared DECIMAL, where the driver hands over text or a
        rounded value; None: as read). Nothing for a query or declared columns."""
        return []

    def stream(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""

    def failure(self, exc: BaseException) -> GristmillError:
        """The driver's error as ours: where, what, what to do; never a secret."""
        text = self._clean(str(exc))
        name = self.source.name
        if _REFUSED.search(text):  # reached, and refused: trying again will not help
            return SourceReadError(
                f"database source {name!r}: {self.source.dialect} at {self.where} refused the "
                f"connection: {_first_line(text)}",
                location=self.source.location,
                hint="check the user, its password (in the environment variable the URL "
                "names), the database name and the URL's options",
            )
        if _UNREACHABLE.search(text):
            return SourceUnavailableError(
                f"database source {name!r}: cannot reach {self.source.dialect} at {self.where}: "
                f"{_first_line(text)}",
                location=self.source.location,
                hint="is the server running and reachable from here? the scheduler tries "
                "again by its retry policy",
            )
        return SourceReadError(
            f"database source {name!r} ({self.source.dialect} at {self.where}): "
            f"{_first_line(text)}",
            location=self.source.location,
            hint="check the table or query, the user's rights and the URL's database",
        )

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        from gristmill.definitions.urls import redact_credentials

        return redact_credentials(text)


_PORTS = {"postgresql": 5432, "mysql": 3306}
_REFUSED = re.compile(
    r"access denied|password authentication failed|authentication failed|"
    r"no pg_hba.conf entry|database \S+ does not exist|unknown database|"
    r"role \S+ does not exist|invalid connection option|invalid \w+ value|"
    r"invalid sslmode|error 1045|error 1044|error 1049",
    re.IGNORECASE,
)
_UNREACHABLE = re.compile(
    r"connection refused|could not connect|failed to connect|timed out|timeout|"
    r"no route to host|name or service not known|could not translate host|"
    r"can't connect|network is unreachable|connection reset|server closed the connection",
    re.IGNORECASE,
)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:2])[:500] if lines else text


class _Postgres(_Connection):
    """ADBC's PostgreSQL driver: COPY-speed Arrow, one repeatable-read read-only snapshot."""

    AUTOCOMMIT = False

    def __init__(self, source: DatabaseSource, url: str, secrets: list[str]) -> None:
        super().__init__(source, url, secrets)
        try:
            import adbc_driver_postgresql.dbapi as pg
        except ModuleNotFoundError:
            from gristmill.errors import MissingExtraError

            raise MissingExtraError("adbc-driver-postgresql", "databases") from None
        try:
            plain = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
            self._conn = pg.connect(_with_timeout(plain), autocommit=self.AUTOCOMMIT)
            self._cursor = self._conn.cursor()
            self.begin()
        except Exception as exc:
            raise self.failure(exc) from None

    def begin(self) -> None:
        """The session's first statement: reads share one repeatable-read snapshot."""
        self._cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def one(self, sql: str) -> tuple[Any, ...]:
        try:
            self._cursor.execute(sql)
            row = self._cursor.fetchone()
        except Exception as exc:
            raise self.failure(exc) from None
        assert row is not None
        return tuple(row)

    def table_columns(self, source: DatabaseSource) -> list[tuple[str, str | None]]:
        """ADBC reads NUMERIC as text (its precision is per value): a ``numeric(p, s)``
        column of the table (resolved as the server does, through the search path) lands
        as DECIMAL(p, s) up to 38 digits; wider or unconstrained ones stay exact text."""
        if source.table is None or source.contract.columns:
            return []
        from sqlglot import exp

        relation = exp.Literal.string(
            exp.to_table(source.table, dialect="postgres").sql(dialect="postgres")
        )
        # atttypmod of numeric(p, s) is ((p << 16) | s) + 4; -1 when unconstrained
        query = f"""SELECT attname, CASE WHEN atttypid = 'numeric'::regtype THEN atttypmod
                    END FROM pg_attribute WHERE attrelid = to_regclass({relation.sql()})
                    AND attnum > 0 AND NOT attisdropped ORDER BY attnum"""
        try:
            self._cursor.execute(query)
            rows = self._cursor.fetchall()
        except Exception as exc:
            raise self.failure(exc) from None
        out: list[tuple[str, str | None]] = []
        for name, typmod in rows:
            kind = None
            if typmod is not None and int(typmod) >= 4:
                precision, scale = (int(typmod) - 4) >> 16, (int(typmod) - 4) & 0xFFFF
                if precision <= 38:
                    kind = f"DECIMAL({precision}, {scale})"
            out.append((str(name), kind))
        return out

    def stream(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        try:
            self._cursor.execute(sql)
            return _plain_types(self._cursor.fetch_record_batch())
        except Exception as exc:
            raise self.failure(exc) from None

    def close(self) -> None:
        try:
            self._conn.rollback()
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing after a failure: nothing more to say
            pass


class _MySQL(_Connection):
    """connectorx over MariaDB/MySQL: each read is one statement in a consistent snapshot,
    with the session in UTC (TIMESTAMP columns read as UTC)."""

    PRE = ["SET time_zone = '+00:00'", "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"]

    def __init__(self, source: DatabaseSource, url: str, secrets: list[str]) -> None:
        super().__init__(source, url, secrets)
        try:
            import connectorx  # noqa: F401
        except ModuleNotFoundError:
            from gristmill.errors import MissingExtraError

            raise MissingExtraError("connectorx", "databases") from None
        self._reachable()

    def _reachable(self) -> None:
        """A refused connection costs connectorx's pool 30 s of retries: ask first."""
        import socket

        parts = urlsplit(self.source.url)
        try:
            with socket.create_connection(
                (parts.hostname or "localhost", parts.port or 3306), timeout=CONNECT_TIMEOUT_S
            ):
                pass
        except OSError as exc:
            raise self.failure(ConnectionError(f"connection refused ({exc})")) from None

    def one(self, sql: str) -> tuple[Any, ...]:
        return tuple(column[0].as_py() for column in self._read(sql).columns)

    def stream(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        return _plain_types(self._read(sql).to_reader(max_chunksize=batch_rows))

    def _read(self, sql: str) -> pa.Table:
        """One statement in a consistent snapshot, in UTC, whole (connectorx's streaming
        reader aborts the process on an error midway)."""
        import connectorx as cx

        try:
            return cx.read_sql(self._url(), sql, return_type="arrow", pre_execution_query=self.PRE)
        except BaseException as exc:  # noqa: BLE001 - connectorx raises Rust panics too
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise self.failure(exc) from None

    DECIMALS_AS_TEXT = True

    def table_columns(self, source: DatabaseSource) -> list[tuple[str, str | None]]:
        """connectorx reads DECIMAL(p, s) as DECIMAL(38, 10), rounding a finer scale and
        failing on wider values: a table's DECIMAL columns are read as text and cast to
        their declared type (up to 38 digits; wider ones stay exact text)."""
        if source.table is None or source.contract.columns:
            return []
        from sqlglot import exp

        schema, _, name = source.table.rpartition(".")
        query = (
            exp.select("column_name", "data_type", "numeric_precision", "numeric_scale")
            .from_(exp.to_table("information_schema.columns"))
            .where(exp.column("table_name").eq(exp.Literal.string(name)))
            .where(
                exp.column("table_schema").eq(
                    exp.Literal.string(schema) if schema else exp.func("database")
                )
            )
            .order_by("ordinal_position")
        )
        out: list[tuple[str, str | None]] = []
        found = self._read(query.sql(dialect="mysql"))
        for column, kind, precision, scale in zip(*found.to_pydict().values(), strict=True):
            cast = None
            if str(kind).lower() == "decimal":
                cast = "VARCHAR" if int(precision) > 38 else f"DECIMAL({precision}, {scale})"
            out.append((str(column), cast))
        return out

    def _url(self) -> str:
        return re.sub(r"^(mariadb|mysql)(\+\w+)?://", "mysql://", self.url)


def _with_timeout(url: str) -> str:
    separator = "&" if "?" in url else "?"
    if "connect_timeout=" in url:
        return url
    return f"{url}{separator}connect_timeout={CONNECT_TIMEOUT_S}"


@contextmanager
def _connection(
    source: DatabaseSource,
    environ: Mapping[str, str] | None = None,
    kind: type[_Connection] | None = None,
) -> Iterator[_Connection]:
    env = os.environ if environ is None else environ
    missing = [v for v in placeholders(source.url) if v not in env]
    if missing:
        named = ", ".join("${" + v + "}" for v in missing)
        raise DefinitionError(
            f"database source {source.name!r}: its URL names {named}, "
            "which the environment does not set",
            location=source.location,
            hint=f"export {missing[0]}=… where gristmill runs (the value is never stored)",
        )
    secrets = [env[v] for v in placeholders(source.url)]
    url = expand(source.url, env)
    if kind is None:
        kind = _Postgres if source.dialect == "postgresql" else _MySQL
    connection = kind(source, url, secrets)
    try:
        yield connection
    finally:
        connection.close()


def _plain_types(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """Arrow extension types the drivers use (PostgreSQL's numeric as an opaque string,
    uuid, json) as their storage types, which every reader understands; declare a
    column's type in ``columns=`` to cast it (numeric to DECIMAL, say)."""
    import pyarrow as pa

    schema = reader.schema
    if not any(isinstance(f.type, pa.ExtensionType) or _is_extension(f.type) for f in schema):
        return reader
    plain = pa.schema([pa.field(f.name, _storage(f.type), f.nullable) for f in schema])

    uuids = {i for i, f in enumerate(schema) if "uuid" in str(f.type).lower()}
    if uuids:  # the canonical text form, not 16 raw bytes
        plain = pa.schema(
            [
                pa.field(f.name, pa.string(), f.nullable) if i in uuids else f
                for i, f in enumerate(plain)
            ]
        )

    def batches() -> Iterator[pa.RecordBatch]:
        import uuid

        for batch in reader:
            arrays = [_storage_array(column) for column in batch.columns]
            for i in uuids:
                arrays[i] = pa.array(
                    [None if b is None else str(uuid.UUID(bytes=b)) for b in arrays[i].to_pylist()],
                    pa.string(),
                )
            yield pa.RecordBatch.from_arrays(arrays, schema=plain)

    return pa.RecordBatchReader.from_batches(plain, batches())


def _is_extension(t: Any) -> bool:
    return hasattr(t, "storage_type")


def _storage(t: Any) -> Any:
    return t.storage_type if _is_extension(t) else t


def _storage_array(a: Any) -> Any:
    return a.storage if hasattr(a, "storage") else a
