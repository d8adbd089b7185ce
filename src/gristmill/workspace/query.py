"""Read-only SQL over pinned table versions, with masks: the SQL page, the API's query
endpoint and the notebook connection (``gm.connect``).

Each table of the project is a view named as the table over the version pinned for it
(the latest by default, one given per table, or the newest as of a time). The views read
the versions' Arrow datasets registered under hidden names; personal-data columns are
masked in the view by the principal's role. A query of the SQL page is parsed first
(sqlglot, DuckDB's dialect): one ``SELECT`` whose tables are the project's tables or its
own CTEs, no table functions; DuckDB then runs it with external access off and its
configuration locked, a row limit and a time limit (interrupted past it).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gristmill.access import Action, mask_of, mask_sql, personal_columns, requires
from gristmill.errors import (
    InvalidInputError,
    NotFoundError,
    QueryBusyError,
    QueryError,
    SavedQueryTaken,
)
from gristmill.storage.catalog.records import SavedQuery, as_utc, utcnow
from gristmill.workspace.shapes import QueryResult, SavedQueryInfo

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from gristmill.workspace.core import Workspace

MAX_TABLES = 64
"""Table references a query of the SQL page may hold: DuckDB plans a join of hundreds for
minutes, and the time limit interrupts execution, not planning."""
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .-]{0,127}$")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Queries:
    """SQL over the lake for people: pinned versions, masks, limits, saved queries."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.running = threading.BoundedSemaphore(ws.project.config.access.query_concurrency)
        """Queries of the SQL page at once in this process: with ``query_memory`` each,
        what the page may take of the server's memory at most."""

    # ---- pins --------------------------------------------------------------------------

    def pins(
        self, versions: Mapping[str, int] | None = None, as_of: datetime | None = None
    ) -> dict[str, int]:
        """Table -> the version queries read: ``versions`` where given, else the newest
        built at or before ``as_of``, else the latest. Unbuilt tables are left out."""
        versions = dict(versions or {})
        tables = self.tables()
        for name in versions:
            if name not in tables:
                raise QueryError(
                    f"no table named {name[:60]!r} to pin",
                    hint=f"tables: {', '.join(tables)[:300]}",
                )
        out: dict[str, int] = {}
        when = as_utc(as_of) if as_of is not None else None
        for name in self.tables():
            if name in versions:
                out[name] = self.ws.materialization(name, versions[name]).version
                continue
            if when is not None:
                built = [
                    m.version
                    for m in self.ws.catalog.history(name)
                    if (as_utc(m.finished_at) or when) <= when
                ]
                if built:
                    out[name] = built[-1]
                continue
            last = self.ws.catalog.latest(name)
            if last is not None:
                out[name] = last.version
        return out

    def tables(self) -> list[str]:
        """What queries can read: the tables and sources (models and the like are not
        tables of rows)."""
        from gristmill.definitions.models import Model

        return [n for n in self.ws.graph.order if not isinstance(self.ws.graph.nodes[n], Model)]

    def masks(self) -> dict[str, dict[str, str]]:
        """Table -> {column: mask} for the current principal (``clear`` columns left out)."""
        mask = mask_of(self.ws.project.config.access, self.ws.principal.role)
        if mask == "clear":
            return {}
        return {
            table: {column: mask for column in columns}
            for table, columns in personal_columns(self.ws.graph).items()
        }

    # ---- connections -------------------------------------------------------------------

    @requires(Action.QUERY)
    def connect(
        self, *, versions: Mapping[str, int] | None = None, as_of: datetime | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a view per table at its pinned version, masked for the
        principal (``gm.connect``). Its views are the project's tables; DuckDB is yours."""
        pins = self.pins(versions, as_of)
        if not pins:
            when = f" as of {as_of.isoformat()}" if as_of is not None else ""
            raise QueryError(
                f"no table has a version to read{when}",
                hint="build the project (`gristmill run`) or pin a later time",
            )
        return self._connection(pins)

    def _connection(self, pins: Mapping[str, int], lock: bool = False) -> duckdb.DuckDBPyConnection:
        """A view per pinned table, masked. Locked (the SQL page): the versions' Arrow
        datasets under hidden names, external access off, the configuration locked; the
        query check keeps those names out of reach. Unlocked (a notebook): views over the
        versions' Parquet files, so no unmasked relation is registered in the connection
        (the files themselves are readable by whoever can read the lake)."""
        import duckdb

        config: dict[str, Any] = {"threads": 2}
        if lock:
            config["memory_limit"] = self.ws.project.config.access.query_memory
        con = duckdb.connect(config=config)
        masks = self.masks()
        hidden = f"__gm_{secrets.token_hex(6)}_"
        for table, version in pins.items():
            masked = masks.get(table, {})
            files = None if lock else self.ws.lake.parquet_files(table, version)
            if files:
                names = self.ws.lake.schema(table, version).names
                source = "read_parquet(?, can_have_nan = true)"
            else:
                dataset = self.ws.lake.dataset(table, version)
                names = dataset.schema.names
                con.register(hidden + table, dataset)
                source = _quote(hidden + table)
            columns = ", ".join(
                f"{mask_sql(_quote(c), masked[c])} AS {_quote(c)}" if c in masked else _quote(c)
                for c in names
            )
            if files:  # a view keeps no parameters: the file list is spelled in it
                listed = "[" + ", ".join(_literal(f) for f in files) + "]"
                source = source.replace("?", listed)
            if not lock and not files and masked:
                # not plain Parquet (deletion vectors, partition values or reader features
                # in the log) and masked: a masked copy, and the unmasked relation dropped
                con.execute(f"CREATE TABLE {_quote(table)} AS SELECT {columns} FROM {source}")
                con.unregister(hidden + table)
                continue
            con.execute(f"CREATE VIEW {_quote(table)} AS SELECT {columns} FROM {source}")
        if lock:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        return con

    # ---- the SQL page ------------------------------------------------------------------

    @requires(Action.QUERY)
    def run(
        self,
        sql: str,
        *,
        versions: Mapping[str, int] | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult:
        """One read-only query; at most ``limit`` rows (``[access] query_rows``) within
        ``timeout_s`` (``[access] query_seconds``)."""
        settings = self.ws.project.config.access
        limit = min(limit or settings.query_rows, settings.query_rows)
        timeout_s = min(timeout_s or settings.query_seconds, settings.query_seconds)
        pins = self.pins(versions, as_of)
        tables = check_query(sql, set(self.tables()))
        unbuilt = sorted(t for t in tables if t not in pins)
        if unbuilt:
            raise QueryError(
                f"table {unbuilt[0]!r} has no version to read"
                + (f" as of {as_of.isoformat()}" if as_of else ""),
                hint=f"build it (`gristmill run +{unbuilt[0]}`) or pin another time",
            )
        used = {t: pins[t] for t in sorted(tables)}
        clock = time.perf_counter()
        with self._guarded(used, timeout_s) as con:
            data = _fetch(con, sql, limit, timeout_s, settings.query_mb)
        truncated = data.num_rows > limit
        data = data.slice(0, limit)
        masks = self.masks()
        masked = {}
        for table, version in used.items():
            m = self.ws.catalog.materialization(table, version)
            present = {c["name"] for c in m.schema} if m else set()
            columns = sorted(c for c in masks.get(table, {}) if c in present)
            if columns:
                masked[table] = columns
        return QueryResult(
            columns=[{"name": f.name, "type": str(f.type)} for f in data.schema],
            rows=[list(r.values()) for r in data.to_pylist()],
            row_count=data.num_rows,
            truncated=truncated,
            limit=limit,
            duration_ms=round((time.perf_counter() - clock) * 1000, 1),
            versions=used,
            masked=masked,
        )

    @requires(Action.QUERY)
    def download(
        self,
        sql: str,
        *,
        format: str,  # noqa: A002
        versions: Mapping[str, int] | None = None,
        as_of: datetime | None = None,
    ) -> tuple[bytes, str]:
        """A query's rows (up to the row limit) as CSV or Parquet bytes, and the media type."""
        import io

        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        if format not in ("csv", "parquet"):
            raise InvalidInputError(f"format {format[:20]!r} is not csv or parquet")
        settings = self.ws.project.config.access
        pins = self.pins(versions, as_of)
        tables = check_query(sql, set(self.tables()))
        used = {t: pins[t] for t in tables if t in pins}
        with self._guarded(used, settings.query_seconds) as con:
            data = _fetch(con, sql, settings.query_rows, settings.query_seconds, settings.query_mb)
        data = data.slice(0, settings.query_rows)
        sink = io.BytesIO()
        if format == "csv":
            pcsv.write_csv(data, sink)
            return sink.getvalue(), "text/csv"
        pq.write_table(data, sink)
        return sink.getvalue(), "application/vnd.apache.parquet"

    @contextmanager
    def _guarded(self, pins: Mapping[str, int], timeout_s: float) -> Iterator[Any]:
        if not self.running.acquire(timeout=timeout_s):
            raise QueryBusyError(
                f"{self.ws.project.config.access.query_concurrency} queries are running and "
                f"none ended within {timeout_s:g} s",
                hint="try again in a moment (or raise [access] query_concurrency)",
            )
        try:
            with self._locked(pins, timeout_s) as con:
                yield con
        finally:
            self.running.release()

    @contextmanager
    def _locked(self, pins: Mapping[str, int], timeout_s: float) -> Iterator[Any]:
        con = self._connection(pins, lock=True)
        timer = threading.Timer(timeout_s, con.interrupt)
        timer.start()
        try:
            yield con
        finally:
            timer.cancel()
            con.close()

    # ---- saved queries -----------------------------------------------------------------

    @requires(Action.QUERY)
    def save(
        self,
        name: str,
        sql: str,
        *,
        versions: Mapping[str, int] | None = None,
        as_of: datetime | None = None,
    ) -> SavedQueryInfo:
        if not NAME.match(name):
            raise InvalidInputError(
                f"query name {name[:40]!r} is not valid",
                hint="1 to 128 letters, digits, spaces, '_', '.', '-'",
            )
        check_query(sql, set(self.tables()))
        pins: dict[str, Any] = {}
        if versions:
            pins["versions"] = dict(self.pins(versions)) | dict(versions)
        if as_of is not None:
            pins["as_of"] = as_of.isoformat()
        self._own(name)
        record = SavedQuery(name, sql, self.ws.principal.name, utcnow(), pins)
        self.ws.catalog.save_query(record)
        return _saved(record)

    @requires(Action.QUERY)
    def saved(self) -> list[SavedQueryInfo]:
        return [_saved(q) for q in self.ws.catalog.saved_queries()]

    def _own(self, name: str) -> None:
        """Refuse to touch another's saved query, unless the principal is an admin."""
        me = self.ws.principal
        taken = next((q for q in self.ws.catalog.saved_queries() if q.name == name), None)
        if taken is not None and taken.owner != me.name and not me.may(Action.MANAGE_OTHERS):
            raise SavedQueryTaken(
                f"the saved query {name[:128]!r} is {taken.owner}'s",
                hint="save yours under another name (an admin may replace it)",
            )

    @requires(Action.QUERY)
    def delete(self, name: str) -> None:
        self._own(name)
        if not self.ws.catalog.delete_query(name):
            raise NotFoundError(f"no saved query named {name[:128]!r}")


def parse_time(value: str | None) -> datetime | None:
    """An ``as_of`` given as text (ISO-8601; a date means its midnight, UTC unless given)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"as_of {value[:40]!r} is not an ISO-8601 time", hint="e.g. 2026-06-01T00:00:00Z"
        ) from None


def _saved(q: SavedQuery) -> SavedQueryInfo:
    return SavedQueryInfo(q.name, q.sql, q.owner, q.saved_at, q.pins)


def _fetch(con: Any, sql: str, limit: int, timeout_s: float, max_mb: int) -> pa.Table:
    import duckdb
    import pyarrow as pa

    try:
        reader = con.sql(sql).to_arrow_reader(min(limit + 1, 1024))
        batches = []
        rows = size = 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
            if size > max_mb * 2**20:
                raise QueryError(
                    f"the result is over {max_mb} MB after {rows:,} rows",
                    hint="select fewer or shorter columns, aggregate, or raise [access] query_mb",
                )
            if rows > limit:
                break
        if not batches:
            return reader.schema.empty_table()
        return pa.Table.from_batches(batches)
    except duckdb.InterruptException:
        raise QueryError(
            f"the query ran past the time limit of {timeout_s:g} s and was stopped",
            hint="filter or aggregate more, or raise [access] query_seconds",
        ) from None
    except duckdb.OutOfMemoryException:
        raise QueryError(
            "the query needed more memory than one query of the SQL page may take",
            hint="aggregate or filter more, or raise [access] query_memory",
        ) from None
    except duckdb.Error as exc:
        message = str(exc).split("\n")[0]
        raise QueryError(f"the query failed: {message}", hint="fix the SQL") from None


def check_query(sql: str, tables: set[str]) -> set[str]:
    """The project tables a query reads; ``QueryError`` unless it is one read-only SELECT
    over those tables and its own CTEs."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    if not sql.strip():
        raise QueryError("the query is empty", hint="write a SELECT")
    if len(sql) > 100_000:
        raise QueryError("the query is over 100,000 characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except RecursionError:
        raise QueryError(
            "the query is nested too deeply to read", hint="flatten it: use CTEs (WITH ...)"
        ) from None
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise QueryError(
            f"the query does not parse{where}: {first.get('description', exc)}",
            hint="the SQL page reads DuckDB's SQL",
        ) from None
    except TokenError as exc:
        raise QueryError(
            f"the query does not parse: {str(exc)[:200]}",
            hint="an unclosed quote or a character SQL does not take",
        ) from None
    if len(statements) != 1:
        raise QueryError(
            f"the SQL holds {len(statements)} statements; the page runs one",
            hint="remove the others (and a trailing ';' is fine)",
        )
    tree = statements[0]
    try:
        return _tables_read(tree, tables)
    except RecursionError:
        raise QueryError(
            "the query is nested too deeply to read", hint="flatten it: use CTEs (WITH ...)"
        ) from None


def _tables_read(tree: Any, tables: set[str]) -> set[str]:
    from sqlglot import exp

    if not isinstance(tree, exp.Query):
        raise QueryError(
            f"only SELECT queries run here, not {tree.key.upper()}",
            hint="the SQL page is read-only: SELECT ... FROM <table>",
        )
    references = sum(1 for _ in tree.find_all(exp.Table))
    if references > MAX_TABLES:
        raise QueryError(
            f"the query reads tables {references} times; the SQL page takes at most {MAX_TABLES}",
            hint="join fewer tables (planning a join of hundreds runs past any time limit)",
        )
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    read: set[str] = set()
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.GenerateSeries):  # range(), generate_series(): no data
            continue
        if not isinstance(table.this, exp.Identifier):
            raise QueryError(
                f"table functions are not allowed here ({table.this.sql(dialect='duckdb')[:60]})",
                hint="read the project's tables by name",
            )
        if table.args.get("db") or table.args.get("catalog"):
            raise QueryError(
                f"{table.sql(dialect='duckdb')[:60]}: only the project's tables can be read",
                hint=f"tables: {', '.join(sorted(tables))[:300]}",
            )
        name = table.name
        if name in ctes:
            continue
        if name not in tables:
            raise QueryError(
                f"no table named {name[:60]!r} in this project",
                hint=f"tables: {', '.join(sorted(tables))[:300]}",
            )
        read.add(name)
    return read
