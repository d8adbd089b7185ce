"""DuckDB: reads Delta versions as Arrow datasets, streams results as Arrow batches.

One in-process database per run (so one memory limit for all steps); each step gets its
own cursor, whose registrations and temp objects no other step can see.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from gristmill.execution.engines.base import Engine, EngineSqlError, Session, register

_LINE = re.compile(r"LINE (\d+):")


def _sql_error(exc: duckdb.Error) -> EngineSqlError:
    text = str(exc)
    match = _LINE.search(text)
    message = text.split("\n\nLINE")[0].strip()
    return EngineSqlError(message, int(match.group(1)) if match else None)


class DuckDBSession(Session):
    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor

    def register(self, name: str, data: pads.Dataset | pa.Table) -> None:
        self._cursor.register(name, data)

    def register_parquet(self, name: str, files: list[str]) -> None:
        from sqlglot import exp

        # no Hive partitions: a folder such as env=prod in the project's path is no column
        plain = exp.PropertyEQ(
            this=exp.to_identifier("hive_partitioning"), expression=exp.Boolean(this=False)
        )
        scan = exp.Anonymous(
            this="read_parquet",
            expressions=[exp.Array(expressions=[exp.Literal.string(f) for f in files]), plain],
        )
        self.define(name, exp.select(exp.Star()).from_(scan).sql(dialect="duckdb"))

    def define(self, name: str, sql: str) -> None:
        self._run(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {sql}')

    def materialize(self, name: str, sql: str) -> None:
        self._run(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {sql}')

    def reader(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        try:
            return self._cursor.sql(sql).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise _sql_error(exc) from None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return self._cursor.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise _sql_error(exc) from None

    def columns(self, name: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.rows(f'DESCRIBE "{name}"')]

    def _run(self, sql: str) -> None:
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
