"""Spark: reads a Delta version by its Parquet file list, runs a step's SQL translated from
DuckDB's dialect, and writes the result with its executors into the table's folder, where
the lake commits the files (no Delta jars: none can be fetched, and none are needed).

One SparkSession per run (started at the first step that needs it); each step gets a
session of its own over the same SparkContext, so its views are its own.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.errors import EngineUnavailableError, MissingExtraError
from gristmill.execution.engines.base import Engine, EngineSqlError, Mapper, Session, register
from gristmill.execution.engines.dialect import duckdb_type, translate

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

REQUIRED_CONF = {
    # what delta-rs reads: INT64 microseconds, not Spark's default INT96
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # DuckDB's TIMESTAMP has no zone: a Parquet time without one stays without one
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
}
"""Settings results depend on: a user's conf cannot change them."""
_LINE = re.compile(r";? ?line \d+ pos \d+")


class SparkStepSession(Session):  # noqa: N801 - not pyspark's SparkSession
    WRITES_FILES = True

    def __init__(self, spark: Any) -> None:
        self._spark = spark
        self._schemas: dict[str, dict[str, str]] = {}
        """Each view's columns as DuckDB types: what ``translate`` types the SQL by."""

    def register(self, name: str, data: pads.Dataset | pa.Table) -> None:
        import pyarrow as pa

        table = data if isinstance(data, pa.Table) else data.head(1)
        if table.num_rows:  # a version a plain Parquet reader would get wrong
            raise EngineUnavailableError(
                f"Spark cannot read {name!r} safely: its Delta version needs deletion "
                "vectors or column mapping, which Spark reads only with Delta's jars",
                hint="run the step on DuckDB (remove engine='spark'), or rewrite the table",
            )
        self._view(name, self._spark.createDataFrame([], _spark_schema(table.schema)))

    def register_parquet(self, name: str, files: list[str]) -> None:
        self._view(name, self._spark.read.parquet(*files))

    def define(self, name: str, sql: str) -> None:
        # with DuckDB's names and types: SQL over the view then sees what it would there
        self._view(name, self._as_duckdb_types(self._frame(sql), sql))

    def materialize(self, name: str, sql: str) -> None:
        self._view(name, self._as_duckdb_types(self._frame(sql), sql).persist())

    def reader(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        raise NotImplementedError("Spark writes results with its executors: write_files")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._frame(sql).collect()]

    def columns(self, name: str) -> list[tuple[str, str]]:
        return list(self._schemas[name].items())

    def write_files(self, sql: str, folder: Path) -> None:
        frame = self._as_duckdb_types(self._frame(sql), sql)
        try:
            frame.write.mode("errorifexists").parquet(str(folder))
        except Exception as exc:  # noqa: BLE001 - Spark's errors, as an engine error
            raise _sql_error(exc) from None

    def write_mapped(self, sql: str, folder: Path, plan: Mapper) -> None:
        import pyarrow as pa

        frame = self._as_duckdb_types(self._frame(sql), sql)
        rows = pa.schema([(f.name, _arrow_type(f.dataType)) for f in frame.schema])
        work, output = plan(rows)
        try:
            mapped = frame.mapInArrow(work, _spark_schema(output))
            mapped.write.mode("errorifexists").parquet(str(folder))
        except Exception as exc:  # noqa: BLE001 - Spark's errors (a worker's, too)
            raise _sql_error(exc) from None

    def _as_duckdb_types(self, frame: Any, sql: str) -> Any:
        """The result with the columns DuckDB gives the same SQL: its names (Spark's may
        differ in case) and its types (Spark's WEEKDAY is an INT where DuckDB's dayofweek
        is a BIGINT; DuckDB's sum of integers a DECIMAL(38, 0)), asked of DuckDB over empty
        tables of the inputs' schemas, and cast to by position."""
        from pyspark.sql.pandas.types import from_arrow_type

        schema = _duckdb_result_schema(sql, self._schemas)
        if schema is None or len(schema) != len(frame.columns):
            return frame
        frame = frame.toDF(*(f"_c{i}" for i in range(len(frame.columns))))
        columns = []
        for i, field in enumerate(schema):
            column = frame[f"_c{i}"]
            try:
                column = column.cast(from_arrow_type(field.type))
            except Exception:  # noqa: BLE001 - a type Spark has no twin for (unsigned): as is
                pass
            columns.append(column.alias(field.name))
        return frame.select(*columns)

    def _frame(self, sql: str) -> Any:
        spark_sql = translate(sql, "spark", self._schemas)
        try:
            return self._spark.sql(spark_sql)
        except Exception as exc:  # noqa: BLE001 - pyspark's AnalysisException and kin
            raise _sql_error(exc) from None

    def _view(self, name: str, frame: Any) -> None:
        frame.createOrReplaceTempView(name)
        self._schemas[name] = {
            field.name: duckdb_type(_arrow_type(field.dataType)) for field in frame.schema
        }


def _duckdb_result_schema(sql: str, schemas: Mapping[str, Mapping[str, str]]) -> pa.Schema | None:
    """The Arrow schema of DuckDB's result of ``sql``, or None when DuckDB cannot say (an
    input of a type it has no name for here)."""
    import duckdb

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    con = duckdb.connect()
    try:
        for name, columns in schemas.items():
            if "UNKNOWN" in columns.values():
                return None
            body = ", ".join(f"{q(c)} {t}" for c, t in columns.items())
            con.execute(f"CREATE TEMP TABLE {q(name)} ({body})")
        return con.sql(sql).to_arrow_table().schema
    except duckdb.Error:
        return None
    finally:
        con.close()


def _sql_error(exc: BaseException) -> EngineSqlError:
    """Spark's message; no line: Spark's would count in the translated SQL, not the step's."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = _LINE.sub("", re.sub(r"\s*SQLSTATE: \w+", "", first)).rstrip("; ")
    if "Python worker" in first:  # the worker's own error, from its traceback's last line
        raised = [line for line in text.splitlines() if re.match(r"^[\w.]+(Error|Exception)", line)]
        if raised:
            first = f"a Python worker failed: {raised[-1].strip()}"
    return EngineSqlError(f"Spark: {first}", None)


def _arrow_type(kind: Any) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type

    try:
        return to_arrow_type(kind)
    except Exception:  # noqa: BLE001 - a type Arrow has no twin for
        import pyarrow as pa

        return pa.null()


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


@register("spark")
class SparkEngine(Engine):
    name = "spark"
    DIALECT = "spark"
    SUPPORTS_PARQUET_SCAN = True

    def __init__(self, *, master: str = "local[2]", conf: Mapping[str, str] | None = None) -> None:
        self._master = master
        self._conf = {**(conf or {}), **REQUIRED_CONF}
        self._lock = threading.Lock()
        self._spark: Any = None

    def _session(self) -> Any:
        with self._lock:
            if self._spark is None:
                self._spark = _start(self._master, self._conf)
            return self._spark

    @contextmanager
    def session(self) -> Iterator[Session]:
        yield SparkStepSession(self._session().newSession())

    def close(self) -> None:
        with self._lock:
            if self._spark is not None:
                self._spark.stop()
                self._spark = None


def _start(master: str, conf: Mapping[str, str]) -> Any:
    """A SparkSession whose JVM writes its console (log4j, progress bars, JVM warnings) to
    a log file, not into gristmill's output: a step's failure reaches the user as its error,
    with Spark's message."""
    import logging
    import tempfile
    import warnings
    from importlib.resources import files

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    try:
        from pyspark import SparkConf, SparkContext
        from pyspark.java_gateway import launch_gateway
        from pyspark.sql import SparkSession
    except ModuleNotFoundError:
        raise MissingExtraError("pyspark", "spark") from None
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logging.getLogger(name).disabled = True  # pyspark logs each error it raises
    quiet = files("gristmill.execution.engines.spark").joinpath("log4j2.properties")
    settings = SparkConf(loadDefaults=False).setMaster(master).setAppName("gristmill")
    settings.set("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{quiet}")
    if master.startswith("local"):  # Python workers (batch scoring) run this interpreter
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # (pyspark reads only this)
    settings.setAll(list(conf.items()))
    folder = Path(tempfile.gettempdir()) / "gristmill-spark"
    folder.mkdir(exist_ok=True)
    log_path = folder / f"{os.getpid()}.log"
    try:
        gateway = SparkContext._gateway  # one JVM per process: a later run reuses it
        if gateway is None:
            with log_path.open("ab") as log:
                gateway = launch_gateway(  # type: ignore[no-untyped-call]
                    settings, popen_kwargs={"stdout": log, "stderr": log}
                )
        context = SparkContext(conf=settings, gateway=gateway)
        return SparkSession(context)
    except Exception as exc:  # noqa: BLE001 - the JVM did not start: say why and what to do
        text = str(exc).strip().splitlines()
        said = [line for line in _tail(log_path) if line.strip()]
        reason = said[-1] if said else (text[0] if text else type(exc).__name__)
        raise EngineUnavailableError(
            f"Spark did not start (master {master}): {reason}",
            hint="Spark needs Java 17 (Debian: apt-get install openjdk-17-jre-headless; "
            f"or set JAVA_HOME) and pyspark (pip install 'gristmill[spark]'); its log: {log_path}",
        ) from None


def _tail(path: Path, size: int = 4096) -> list[str]:
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - size))
            return log.read().decode(errors="replace").splitlines()
    except OSError:
        return []
