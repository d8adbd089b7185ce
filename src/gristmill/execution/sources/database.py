"""Database sources: PostgreSQL through ADBC, MariaDB/MySQL through connectorx.

An extraction is one SELECT (one consistent snapshot on both servers) of the rows past
the watermark minus the lag, streamed as Arrow into the step's DuckDB session, where the
new watermark and the rows still inside the lag window are counted; the rows are then
merged by primary key into a new Delta version whose commit carries that state (and an
app transaction numbering the extraction). ``discover`` asks the server for the newest
cursor value and the rows in the lag window, so a run with nothing new is a no-op.
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
from gristmill.planning.planner import SourceOffer, WriteMode

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

    from gristmill.execution.steps import StepContext
    from gristmill.storage.catalog import Materialization

STATE_KEY = "source"
"""Where a materialization's stats keep the source's state."""
RAW = "__gm_extracted"
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class State:
    """How far a database source got: its newest cursor value, the rows it read inside
    the lag window below it, and how many extractions were committed."""

    watermark: Any
    window_rows: int
    sequence: int

    def to_json(self) -> dict[str, Any]:
        kind, text = _encode(self.watermark)
        return {
            "watermark": text,
            "watermark_type": kind,
            "window_rows": self.window_rows,
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
        )


# ---- discover -------------------------------------------------------------------------


def discover(source: DatabaseSource, last: Materialization | None) -> SourceOffer:
    """Whether the server holds rows the last extraction did not read."""
    state = State.of(last)
    if not source.incremental:
        return SourceOffer(news="a source without a cursor is read whole on every run")
    if state is None or state.watermark is None:
        return SourceOffer(news="no watermark yet: reading everything")
    cursor = source.cursor[0]
    low = _lower_bound(source, state.watermark)
    column = _column(cursor)
    counted = _count_above(column, low, source.dialect)
    query = _select_from(source).select(
        _max(column).as_("high"), counted.as_("window"), append=False
    )
    with _connection(source) as connection:
        row = connection.one(query.sql(dialect=_DIALECTS[source.dialect]))
    high, window = row[0], int(row[1] or 0)
    shown = _show(state.watermark)
    if high is not None and _newer(high, state.watermark):
        return SourceOffer(news=f"rows past {cursor} {shown} (up to {_show(high)})")
    if window != state.window_rows:
        return SourceOffer(
            news=f"{window - state.window_rows:+d} row(s) within the lag below {cursor} {shown}"
        )
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
    state = State.of(ctx.previous) if merging else None
    low = None
    if state is not None and state.watermark is not None and source.incremental:
        low = _lower_bound(source, state.watermark)
    query = _read_query(source, low).sql(dialect=_DIALECTS[source.dialect])
    with _connection(source) as connection:
        new_state = _server_state(connection, source, state, State.of(ctx.previous))
        _refuse_a_second_writer(ctx, source, new_state.sequence)
        casts = connection.numeric_types(source)
        ctx.session.register(RAW, connection.stream(query, source.chunk_rows))
        relation = _write_relation(ctx, source, merging, casts)
        failpoints.hit("after_extract", source.name)
        template = replace(
            ctx.template, stats={**ctx.template.stats, STATE_KEY: new_state.to_json()}
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
            transactions={_app_id(source): new_state.sequence},
            no_stats=tuple(c for c, _ in source.pii),
        )
        try:
            return write(ctx.session, ctx.lake, request)
        except GristmillError:
            raise
        except Exception as exc:  # the server or the stream failed midway
            raise connection.failure(exc) from None


def _refuse_a_second_writer(ctx: StepContext, source: DatabaseSource, sequence: int) -> None:
    """The lake's own count of extractions must be the one this one follows; more means
    another process extracted meanwhile (this one's rows would be merged twice)."""
    committed = ctx.lake.transaction_version(source.name, _app_id(source))
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
    counted = _count_above(column, _lower_bound(source, high), source.dialect)
    in_window = _select_from(source).select(counted, append=False)
    (window,) = connection.one(in_window.sql(dialect=dialect))
    return State(high, int(window or 0), sequence)


def _write_relation(
    ctx: StepContext, source: DatabaseSource, merging: bool, casts: Mapping[str, str]
) -> str:
    """The rows to write, as a view over the server's stream (read once, by the writer):
    declared DECIMAL types back, one row per key (the newest by cursor) when a query may
    repeat a key (a table's key is unique in one snapshot), without soft-deleted rows on a
    full load (a merge deletes them by key)."""
    present = {c for c, _ in ctx.session.columns(RAW)}
    replaced = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in casts.items() if c in present)
    columns = f"* REPLACE ({replaced})" if replaced else "*"
    view = RAW + "_rows"
    keys = ", ".join(f'"{k}"' for k in source.primary_key)
    filters = []
    if source.soft_delete and not merging:
        filters.append(f'"{source.soft_delete}" IS NULL')
    where = f" WHERE {' AND '.join(filters)}" if filters else ""
    if keys and source.cursor and source.query is not None:
        order = ", ".join(f'"{c}" DESC' for c in source.cursor)
        sql = (
            f'SELECT {columns} FROM "{RAW}"{where} '
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
        )
    else:
        sql = f'SELECT {columns} FROM "{RAW}"{where}'
    ctx.session.define(view, sql)
    from gristmill.definitions.config import PiiSettings
    from gristmill.execution.sources.pii import pseudonymize

    return pseudonymize(ctx.session, source, view, ctx.pii or PiiSettings(), ctx.root)


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
            raise DefinitionError(
                f"database source {source.name!r}: its query does not parse: {exc}",
                location=source.location,
            ) from None
        relation = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("gm_q")))
    return exp.select(exp.Star()).from_(relation)


def _read_query(source: DatabaseSource, low: Any) -> exp.Select:
    from sqlglot import exp

    query = _select_from(source)
    if source.contract.columns:
        wanted = list(source.contract.columns)
        query = query.select(*[_column(c) for c in wanted], append=False)
    if low is not None:
        bound = _literal(low, source.dialect)
        query = query.where(exp.GT(this=_column(source.cursor[0]), expression=bound))
    return query


def _column(name: str) -> exp.Column:
    from sqlglot import exp

    return exp.column(name, quoted=True)


def _max(column: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    return exp.Max(this=column)


def _count_above(column: exp.Expression, low: Any, dialect: str) -> exp.Expression:
    from sqlglot import exp

    above = exp.GT(this=column, expression=_literal(low, dialect))
    return exp.Count(this=exp.Case(ifs=[exp.If(this=above, true=exp.Literal.number(1))]))


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

    def numeric_types(self, source: DatabaseSource) -> dict[str, str]:
        """Declared DECIMAL types of a table's columns that the driver hands over as text
        (column -> DuckDB type); none to cast by default."""
        return {}

    def stream(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""

    def failure(self, exc: BaseException) -> GristmillError:
        """The driver's error as ours: where, what, what to do; never a secret."""
        text = self._clean(str(exc))
        name = self.source.name
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
        return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


_PORTS = {"postgresql": 5432, "mysql": 3306}
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

    def __init__(self, source: DatabaseSource, url: str, secrets: list[str]) -> None:
        super().__init__(source, url, secrets)
        try:
            import adbc_driver_postgresql.dbapi as pg
        except ModuleNotFoundError:
            from gristmill.errors import MissingExtraError

            raise MissingExtraError("adbc-driver-postgresql", "databases") from None
        try:
            self._conn = pg.connect(_with_timeout(url))
            self._cursor = self._conn.cursor()
            self._cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        except Exception as exc:
            raise self.failure(exc) from None

    def one(self, sql: str) -> tuple[Any, ...]:
        try:
            self._cursor.execute(sql)
            row = self._cursor.fetchone()
        except Exception as exc:
            raise self.failure(exc) from None
        assert row is not None
        return tuple(row)

    def numeric_types(self, source: DatabaseSource) -> dict[str, str]:
        """ADBC reads NUMERIC as text (its precision is per value): a table's declared
        ``numeric(p, s)`` columns become DECIMAL(p, s) (up to 38 digits), others DOUBLE."""
        if source.table is None or source.contract.columns:
            return {}
        from sqlglot import exp

        schema, _, name = source.table.rpartition(".")
        info = exp.to_table("information_schema.columns")
        query = (
            exp.select("column_name", "numeric_precision", "numeric_scale")
            .from_(info)
            .where(exp.column("table_name").eq(exp.Literal.string(name)))
            .where(exp.column("data_type").eq(exp.Literal.string("numeric")))
        )
        if schema:
            query = query.where(exp.column("table_schema").eq(exp.Literal.string(schema)))
        try:
            self._cursor.execute(query.sql(dialect="postgres"))
            rows = self._cursor.fetchall()
        except Exception as exc:
            raise self.failure(exc) from None
        return {
            str(c): f"DECIMAL({p}, {s})" if p is not None and int(p) <= 38 else "DOUBLE"
            for c, p, s in rows
        }

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

    def numeric_types(self, source: DatabaseSource) -> dict[str, str]:
        """connectorx reads DECIMAL(p, s) as DECIMAL(38, 10): the declared type back."""
        if source.table is None or source.contract.columns:
            return {}
        from sqlglot import exp

        schema, _, name = source.table.rpartition(".")
        query = (
            exp.select("column_name", "numeric_precision", "numeric_scale")
            .from_(exp.to_table("information_schema.columns"))
            .where(exp.column("table_name").eq(exp.Literal.string(name)))
            .where(exp.column("data_type").eq(exp.Literal.string("decimal")))
            .where(
                exp.column("table_schema").eq(
                    exp.Literal.string(schema) if schema else exp.func("database")
                )
            )
        )
        table = self._read(query.sql(dialect="mysql"))
        return {
            str(r["column_name"]): f"DECIMAL({r['numeric_precision']}, {r['numeric_scale']})"
            for r in table.rename_columns(
                ["column_name", "numeric_precision", "numeric_scale"]
            ).to_pylist()
            if r["numeric_precision"] is not None and int(r["numeric_precision"]) <= 38
        }

    def _url(self) -> str:
        return re.sub(r"^(mariadb|mysql)(\+\w+)?://", "mysql://", self.url)


def _with_timeout(url: str) -> str:
    separator = "&" if "?" in url else "?"
    if "connect_timeout=" in url:
        return url
    return f"{url}{separator}connect_timeout={CONNECT_TIMEOUT_S}"


@contextmanager
def _connection(
    source: DatabaseSource, environ: Mapping[str, str] | None = None
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

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            yield pa.RecordBatch.from_arrays(
                [_storage_array(column) for column in batch.columns], schema=plain
            )

    return pa.RecordBatchReader.from_batches(plain, batches())


def _is_extension(t: Any) -> bool:
    return hasattr(t, "storage_type")


def _storage(t: Any) -> Any:
    return t.storage_type if _is_extension(t) else t


def _storage_array(a: Any) -> Any:
    return a.storage if hasattr(a, "storage") else a
