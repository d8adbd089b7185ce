"""DuckDB: reads Delta versions as Arrow datasets, streams results as Arrow batches.

One in-process database per run (so one memory limit for all steps); each step gets its
own cursor, whose registrations and temp objects no other step can see.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
from sqlglot import exp

from gristmill.execution.engines.base import Engine, EngineSqlError, Session, register

_LINE = re.compile(r"LINE (\d+):")
_NO_HIVE = exp.PropertyEQ(
    this=exp.to_identifier("hive_partitioning"), expression=exp.Boolean(this=False)
)
"""No Hive partitions: a folder such as env=prod in the project's path is no column."""
_NAN = exp.PropertyEQ(this=exp.to_identifier("can_have_nan"), expression=exp.Boolean(this=True))
"""A float column may hold NaN whatever its min/max say: Parquet writers (delta-rs's too)
leave NaN out of them, and DuckDB would otherwise fold isnan(x) to false (duckdb#25521)."""


def _sql_error(exc: duckdb.Error) -> EngineSqlError:
    """The message and the line it points at (statements run with ``execute`` have one;
    queries of the relational API, ``sql``, do not)."""
    text = str(exc)
    match = _LINE.search(text)
    message = text.split("\n\nLINE")[0].strip()
    return EngineSqlError(message, int(match.group(1)) if match else None)


@lru_cache(maxsize=1024)
def _scans_prefix(names: tuple[str, ...]) -> str:
    """``WITH "a" AS NOT MATERIALIZED (SELECT * FROM read_parquet($gm_scan_0, …)), … SELECT
    * FROM (`` for the caller's query to follow on the next line; the files are bound as
    parameters, so the text depends on the names only and is built once."""
    from sqlglot import exp

    query = exp.select(exp.Star()).from_(exp.to_table("__gm_query"))
    for i, name in enumerate(names):
        scan = exp.Anonymous(
            this="read_parquet",
            expressions=[exp.Placeholder(this=f"gm_scan_{i}"), _NO_HIVE, _NAN],
        )
        query = query.with_(
            exp.to_identifier(name, quoted=True),
            as_=exp.select(exp.Star()).from_(scan),
            materialized=False,
        )
    text = query.sql(dialect="duckdb")
    head, tail = text.rsplit("__gm_query", 1)
    assert not tail.strip(), text
    return head + "(\n"


def _scan_sql(files: list[str]) -> str:
    from sqlglot import exp

    scan = exp.Anonymous(
        this="read_parquet",
        expressions=[
            exp.Array(expressions=[exp.Literal.string(f) for f in files]),
            _NO_HIVE,
            _NAN,
        ],
    )
    return exp.select(exp.Star()).from_(scan).sql(dialect="duckdb")


class DuckDBSession(Session):
    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor
        self._scans: dict[str, list[str]] = {}
        """Parquet inputs not yet defined as views. A streamed query reads them as
        not-materialized CTEs: DuckDB binds (opens the files of) a view when it is created
        and again for each query, so one query over CTEs costs half (a 100-step chain's
        SQL steps: 0.6 ms each). Anything else defines the views first."""

    def register(self, name: str, data: pads.Dataset | pa.Table) -> None:
        self._scans.pop(name, None)
        self._cursor.register(name, data)

    def register_parquet(self, name: str, files: list[str]) -> None:
        self._scans[name] = list(files)

    def define(self, name: str, sql: str) -> None:
        self._run(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {sql}')

    def materialize(self, name: str, sql: str) -> None:
        self._run(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {sql}')

    def reader(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        if self._scans:
            names = tuple(self._scans)
            params = {f"gm_scan_{i}": self._scans[n] for i, n in enumerate(names)}
            try:
                relation = self._cursor.sql(_scans_prefix(names) + sql + "\n)", params=params)
                return relation.to_arrow_reader(batch_rows)
            except duckdb.Error as exc:
                raise _sql_error(exc) from None
        try:
            return self._cursor.sql(sql).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise _sql_error(exc) from None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        self._define_scans()
        try:
            return self._cursor.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise _sql_error(exc) from None

    def columns(self, name: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.rows(f'DESCRIBE "{name}"')]

    def _define_scans(self) -> None:
        scans, self._scans = self._scans, {}
        for name, files in scans.items():
            self._execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {_scan_sql(files)}')

    def _run(self, sql: str) -> None:
        self._define_scans()
        self._execute(sql)

    def _execute(self, sql: str) -> None:
        try:
            self._cursor.execute(sql)
        except duckdb.Error as exc:
            raise _sql_error(exc) from None


@register("duckdb")
class DuckDBEngine(Engine):
    name = "duckdb"
    SUPPORTS_SPILLING = True
    SUPPORTS_ARROW_STREAMING = True
    SUPPORTS_PARQUET_SCAN = True

    def __init__(
        self, *, memory_limit: str = "4GB", threads: int | None = None, temp_directory: Path
    ) -> None:
        self._lock = threading.Lock()
        self._settings = {
            "memory_limit": memory_limit,
            "threads": threads,
            "temp_directory": str(temp_directory),
        }
        self._db: duckdb.DuckDBPyConnection | None = None

    def _database(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                config: dict[str, Any] = {
                    "memory_limit": self._settings["memory_limit"],
                    "temp_directory": self._settings["temp_directory"],
                    # Never fetch extensions at run time: everything must work offline.
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                    # An ASOF JOIN whose left side DuckDB guesses small (a spine built by
                    # unnest, estimated at a row or two) became a nested loop join: the
                    # churn example's user_profile took ~18 min instead of ~5 s at 1M
                    # transactions. The sort-merge ASOF join is right at every size.
                    "asof_loop_join_threshold": 0,
                }
                if self._settings["threads"]:
                    config["threads"] = self._settings["threads"]
                self._db = duckdb.connect(":memory:", config=config)
                # Timestamps with a zone (the prediction log's `at`) become plain UTC
                # times when cast, whatever the machine's zone; every cursor inherits it.
                self._db.execute("SET GLOBAL TimeZone = 'UTC'")
            return self._db

    @contextmanager
    def session(self) -> Iterator[Session]:
        cursor = self._database().cursor()
        try:
            yield DuckDBSession(cursor)
        finally:
            cursor.close()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
