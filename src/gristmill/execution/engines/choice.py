"""Which engine runs a step, and why: the right tool for the job.

With ``engine = "auto"`` (the default) a SQL step runs on DuckDB unless the Delta versions
it reads add up to ``auto_threshold`` or more, where it runs on Spark, if Spark can run it
the same: pyspark and Java are there, and its SQL translates (else DuckDB, saying why). A
step pinned with ``engine="spark"`` runs there; ``engine = "duckdb"`` or ``"spark"`` in
``gristmill.toml`` puts every SQL step on that engine. Training sets, batch scoring and
drift monitors follow the same size rule. What runs on DuckDB only (Python steps, sources,
models) stays there. A SQL step's checks run on Spark; a partitioned step's rows, or one
with declared column types, are computed by Spark and finished (typed, checked, written
into their partitions) by DuckDB.

The planner's dry run and the runner ask the same ``EngineChooser``: ``gristmill run
--dry-run`` shows the choice per step, and ``gristmill runs ID`` where each step ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.definitions.models import TrainingSet
from gristmill.definitions.objects import Table
from gristmill.errors import ConfigError

if TYPE_CHECKING:
    from gristmill.definitions.objects import Definition
    from gristmill.storage.lake import Lake

DEFAULT_THRESHOLD = "20GB"


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    """``duckdb`` or ``spark``."""
    reason: str


def size_text(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def spark_missing() -> str | None:
    """Why Spark cannot start here, or None: pyspark installed and a Java runtime found."""
    import importlib.util
    import os
    import shutil

    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'gristmill[spark]')"
    home = os.environ.get("JAVA_HOME")
    java = Path(home) / "bin" / "java" if home else shutil.which("java")
    if java is None or not Path(java).exists():
        return "no Java runtime was found (install Java 17 or set JAVA_HOME)"
    return None


REMOTE_LAKE = (
    "Spark with a lake on object storage needs a local master (local[N]): the driver "
    "stages what the executors read and write on its own disk"
)


class EngineChooser:
    def __init__(
        self,
        lake: Lake,
        *,
        project_engine: str,
        threshold_bytes: float,
        spark_master: str = "local[2]",
        spark_missing: Callable[[], str | None] = spark_missing,
    ) -> None:
        self._lake = lake
        self._remote_refused = lake.remote and not spark_master.startswith("local")
        self._project = project_engine
        self._threshold = threshold_bytes
        self._spark_missing = spark_missing
        self._missing: tuple[str | None] | None = None  # asked once

    def choose(self, definition: Definition, versions: Mapping[str, int]) -> EngineChoice:
        """The engine of ``definition`` when it reads ``versions`` of its inputs."""
        if isinstance(definition, TrainingSet):
            return self._by_size(definition, versions)
        if not isinstance(definition, Table) or definition.function is not None:
            return EngineChoice("duckdb", "only SQL steps and training sets move to Spark")
        if definition.engine is not None:
            if definition.engine == "spark":
                self._refuse_remote(f"table {definition.name!r} is pinned to engine='spark'")
            return EngineChoice(definition.engine, f"pinned: engine={definition.engine!r}")
        return self._by_size(definition, versions)

    def for_data(self, versions: Mapping[str, int]) -> EngineChoice:
        """The engine of work over ``versions`` outside a step (batch scoring)."""
        return self._by_size(None, versions)

    def _by_size(
        self, definition: Table | TrainingSet | None, versions: Mapping[str, int]
    ) -> EngineChoice:
        """The project's engine, or under ``auto`` the one its inputs' size calls for."""
        if self._project != "auto":
            if self._project == "spark":
                self._refuse_remote('gristmill.toml sets engine = "spark"')
            return EngineChoice(self._project, f"project engine = {self._project}")
        size = self.input_bytes(versions)
        threshold = size_text(self._threshold)
        if size < self._threshold:
            return EngineChoice("duckdb", f"inputs {size_text(size)} < auto_threshold {threshold}")
        big = f"inputs {size_text(size)} ≥ auto_threshold {threshold}"
        if self._remote_refused:
            return EngineChoice("duckdb", f"{big}, but {REMOTE_LAKE}")
        missing = self._spark_unavailable()
        if missing:
            return EngineChoice("duckdb", f"{big}, but {missing}")
        # a training set's SQL is gristmill's own, in the shape the tests verify on Spark
        refusal = (
            self._untranslatable(definition, versions) if isinstance(definition, Table) else None
        )
        if refusal:
            return EngineChoice("duckdb", f"{big}, but {refusal}")
        return EngineChoice("spark", big)

    def _refuse_remote(self, what: str) -> None:
        if self._remote_refused:
            raise ConfigError(
                f"{what}, but {REMOTE_LAKE} ({self._lake.location.url})",
                hint='run it on DuckDB (engine = "auto" or "duckdb"), use a local Spark '
                'master ([spark] master = "local[4]"), or keep the lake in a local folder',
            )

    def input_bytes(self, versions: Mapping[str, int]) -> int:
        return sum(self._lake.version_bytes(name, v) for name, v in versions.items())

    def _spark_unavailable(self) -> str | None:
        if self._missing is None:
            self._missing = (self._spark_missing(),)
        return self._missing[0]

    def _untranslatable(self, table: Table, versions: Mapping[str, int]) -> str | None:
        from gristmill.execution.engines.dialect import Untranslatable, duckdb_type, translate

        schema = {
            name: {f.name: duckdb_type(f.type) for f in self._lake.schema(name, version)}
            for name, version in versions.items()
        }
        try:
            translate((table.sql or "").strip().rstrip(";"), "spark", schema)
        except Untranslatable as exc:
            first = exc.refusals[0]
            where = table.sql_path or table.location.path
            line = table.file_line(first.line)
            at = f" ({Path(where).name}:{line})" if where and line else ""
            return f"{first.construct}{at} has no verified mapping to Spark"
        return None
