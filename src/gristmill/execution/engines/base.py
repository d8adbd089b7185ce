"""What every engine offers the runner: sessions that register inputs and stream results.

Core code asks an engine for a capability through its flags, never by its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gristmill.errors import UnknownNameError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

Batches = Callable[[Iterator["pa.RecordBatch"]], Iterator["pa.RecordBatch"]]
Mapper = Callable[["pa.Schema"], tuple[Batches, "pa.Schema"]]
"""Given the rows' schema: a function over a worker's batches, and its output's schema."""


class Session(ABC):
    """One step's private workspace inside an engine (its own inputs and temp objects)."""

    WRITES_FILES: ClassVar[bool] = False
    """The engine's own workers write a result's files (``write_files``); the lake then
    commits them. Otherwise results stream through ``reader`` into the lake."""

    @abstractmethod
    def register(self, name: str, data: pads.Dataset | pa.Table) -> None:
        """Make ``data`` readable under ``name``."""

    def register_parquet(self, name: str, files: list[str]) -> None:
        """Make Parquet files readable under ``name`` (engines with SUPPORTS_PARQUET_SCAN)."""
        raise NotImplementedError

    @abstractmethod
    def define(self, name: str, sql: str) -> None:
        """Create a temporary view; raises ``EngineSqlError`` with the line on failure."""

    @abstractmethod
    def materialize(self, name: str, sql: str) -> None:
        """Create a temporary table from a query (spilling to disk when large)."""

    @abstractmethod
    def reader(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        """Stream a query's result as Arrow record batches."""

    @abstractmethod
    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a small query and return its rows."""

    @abstractmethod
    def columns(self, name: str) -> list[tuple[str, str]]:
        """Column names and types of a view or table."""

    def write_files(self, sql: str, folder: Path) -> None:
        """Write a query's result as Parquet files below ``folder`` (``WRITES_FILES``)."""
        raise NotImplementedError

    def write_mapped(self, sql: str, folder: Path, plan: Mapper) -> None:
        """Write a query's rows, each batch turned by a function the workers run, as
        Parquet files below ``folder`` (``WRITES_FILES``). ``plan`` gets the rows' Arrow
        schema and gives the function and the schema of what it yields."""
        raise NotImplementedError


class EngineSqlError(Exception):
    """Raised by sessions: the engine's message and the 1-based line it points at."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class Engine(ABC):
    name: ClassVar[str]
    DIALECT: ClassVar[str] = "duckdb"
    """The SQL it runs; steps are written in DuckDB's and translated (``dialect.py``)."""
    SUPPORTS_SPILLING: ClassVar[bool] = False
    SUPPORTS_ARROW_STREAMING: ClassVar[bool] = False
    SUPPORTS_PARQUET_SCAN: ClassVar[bool] = False
    """Reads a Delta version's Parquet files natively (faster than an Arrow dataset)."""

    @abstractmethod
    def session(self) -> AbstractContextManager[Session]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held across sessions."""


_ENGINES: dict[str, Callable[..., Engine]] = {}


def register(name: str) -> Callable[[type[Engine]], type[Engine]]:
    def decorate(cls: type[Engine]) -> type[Engine]:
        _ENGINES[name] = cls
        return cls

    return decorate


_MODULES = {
    "duckdb": "gristmill.execution.engines.duckdb",
    "spark": "gristmill.execution.engines.spark",
}
"""Each engine's module, imported when the engine is first asked for (Spark's is heavy)."""


def create_engine(name: str, **settings: Any) -> Engine:
    import importlib

    if name not in _MODULES:
        raise UnknownNameError("engine", name, list(_MODULES))
    importlib.import_module(_MODULES[name])  # registers itself
    return _ENGINES[name](**settings)
