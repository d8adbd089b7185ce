"""Declarative objects a project module creates: tables and feature views (sources are
kinds of their own, in ``definitions.sources``).

They are plain frozen values that remember where they were defined; creating one does no
I/O. The loader collects every instance bound at a module's top level.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gristmill.definitions.contracts import Contract, RowCheck, RowCount, flatten_checks
from gristmill.definitions.partitions import Partitioning
from gristmill.errors import DefinitionError, Location

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_SUFFIXES = ("__quarantine", "__prediction_log", "__decisions")
"""Table names gristmill keeps for itself: a contract's rejects, a service's logs."""


class StepKind(StrEnum):
    INGEST = "ingest"
    SQL = "sql"
    PYTHON = "python"
    TRAINING_SET = "training_set"
    MODEL = "model"


def _caller_location(depth: int = 2) -> Location:
    frame = sys._getframe(depth)
    return Location(Path(frame.f_code.co_filename), frame.f_lineno)


def _literal_line(location: Location, keyword: str) -> int | None:
    """The line where the call at ``location`` opens its ``keyword=`` string (a SQL that
    starts below ``gm.table(`` is counted from there)."""
    import ast

    if location.path is None or location.line is None:
        return None
    try:
        tree = ast.parse(Path(location.path).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.lineno <= location.line <= (node.end_lineno or 0):
            for argument in node.keywords:
                if argument.arg == keyword and isinstance(argument.value, ast.Constant):
                    return argument.value.lineno
    return None


def check_name(name: str, location: Location) -> None:
    import re

    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise DefinitionError(
            f"invalid name {name!r}",
            location=location,
            hint="names are identifiers: letters, digits, underscores; not starting with a digit",
        )
    if name.endswith(RESERVED_SUFFIXES):
        raise DefinitionError(
            f"the name {name!r} ends like a table gristmill keeps for itself",
            location=location,
            hint=f"names may not end in {', '.join(RESERVED_SUFFIXES)}",
        )


def make_contract(
    columns: Mapping[str, str] | None,
    checks: Sequence[RowCheck | tuple[RowCheck, ...]],
    row_count: RowCount | None,
    max_quarantine_share: float,
    location: Location,
) -> Contract:
    try:
        return Contract(
            columns=dict(columns or {}),
            checks=flatten_checks(checks),
            row_count=row_count,
            max_quarantine_share=max_quarantine_share,
        )
    except DefinitionError as exc:
        raise DefinitionError(exc.message, location=location, hint=exc.hint) from None


@dataclass(frozen=True)
class Definition:
    """Anything with a name in the project graph."""

    name: str
    location: Location
    description: str

    @property
    def kind(self) -> StepKind:
        raise NotImplementedError

    @property
    def dependencies(self) -> tuple[str, ...]:
        return ()

    def validate(self, nodes: Mapping[str, Definition]) -> None:
        """Check references to other definitions (their names are known to exist)."""


@dataclass(frozen=True)
class FeatureSpec:
    """Marks a table as a feature view: an entity key and an event timestamp."""

    entity: tuple[str, ...]
    timestamp: str
    online: bool = True
    """Keep each entity's latest row in the online store (filled by every run)."""
    pushed_from: str | None = None
    """A stream or intake source whose landed rows update this view's online rows at once
    (``gm.stream_features``), before the view itself is rebuilt."""


@dataclass(frozen=True)
class Table(Definition):
    """A table produced by a SQL or Python step."""

    contract: Contract
    sql: str | None = None
    sql_path: Path | None = None
    function: Callable[..., Any] | None = field(default=None, compare=False)
    inputs: tuple[str, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()
    feature: FeatureSpec | None = None
    partitions: Partitioning | None = None
    """Built and tracked a slice at a time (``gm.daily``, ``gm.monthly``, ``gm.static``)."""
    engine: str | None = None
    """Where its SQL runs: ``"spark"`` pins it there; None: the project's engine. Not part
    of its fingerprint (the result is the same on every engine, by design)."""
    sql_line: int | None = field(default=None, compare=False)
    """The file line of the SQL's first line (where its string opens), for errors."""

    @property
    def kind(self) -> StepKind:
        return StepKind.PYTHON if self.function is not None else StepKind.SQL

    def file_line(self, sql_line: int | None) -> int | None:
        """A line of the step's SQL as run (stripped) as a line of the file it is in."""
        if sql_line is None:
            return self.location.line
        raw = self.sql or ""
        stripped = raw[: len(raw) - len(raw.lstrip())].count("\n")
        return (self.sql_line or self.location.line or 1) + stripped + sql_line - 1

    @property
    def dependencies(self) -> tuple[str, ...]:
        return self.inputs

    def validate(self, nodes: Mapping[str, Definition]) -> None:
        if self.partitions is None:
            return
        strangers = sorted(k for k, _ in self.partitions.upstream if k not in self.inputs)
        if strangers:
            raise DefinitionError(
                f"table {self.name!r}: upstream= names {', '.join(map(repr, strangers))}, "
                "which it does not read",
                location=self.location,
                hint="its inputs: " + (", ".join(self.inputs) or "none"),
            )


def table(
    name_or_function: str | Callable[..., Any] | None = None,
    *,
    sql: str | None = None,
    columns: Mapping[str, str] | None = None,
    checks: Sequence[RowCheck | tuple[RowCheck, ...]] = (),
    row_count: RowCount | None = None,
    max_quarantine_share: float = 0.05,
    params: Mapping[str, Any] | None = None,
    entity: str | Sequence[str] | None = None,
    timestamp: str | None = None,
    partitions: Partitioning | None = None,
    description: str = "",
    engine: str | None = None,
) -> Any:
    """Declare a table built by SQL, or decorate a Python function that builds one.

    SQL: ``gm.table("daily", sql="select ... from transactions")`` or a file
    ``sql/daily.sql`` (found automatically; declare it here only to add a contract).
    Python: ``@gm.table`` over a function whose parameter names are its input tables and
    which returns an Arrow table (or Polars/pandas frame).

    ``partitions=gm.daily("day", start="2025-10-01")`` (or ``gm.monthly``, ``gm.static``)
    builds the table a partition at a time: the step's rows are kept to the partitions being
    built, and a Python function with a ``partition`` parameter gets the range to build.
    """
    location = _caller_location()
    feature = _feature(entity, timestamp, location)
    _partitioning(partitions, location)
    _engine(engine, location)

    def build(name: str, function: Callable[..., Any] | None) -> Table:
        check_name(name, location)
        if engine is not None and function is not None:
            raise DefinitionError(
                f"table {name!r}: engine= pins SQL; a Python step runs in the process",
                location=location,
                hint="remove engine=",
            )
        inputs: tuple[str, ...] = ()
        loc = location
        if function is not None:
            taken = set(params or {}) | ({"partition"} if partitions is not None else set())
            inputs = tuple(p for p in inspect.signature(function).parameters if p not in taken)
            loc = Location(Path(inspect.getfile(function)), function.__code__.co_firstlineno)
        return Table(
            name=name,
            location=loc,
            description=description or (inspect.getdoc(function) or "" if function else ""),
            contract=make_contract(columns, checks, row_count, max_quarantine_share, loc),
            sql=sql,
            function=function,
            inputs=inputs,
            params=tuple(sorted((params or {}).items())),
            feature=feature,
            partitions=partitions,
            engine=engine,
            sql_line=_literal_line(location, "sql") if sql is not None else None,
        )

    if callable(name_or_function):
        return build(name_or_function.__name__, name_or_function)
    if isinstance(name_or_function, str):
        return build(name_or_function, None)

    def decorator(function: Callable[..., Any]) -> Table:
        return build(function.__name__, function)

    return decorator


ENGINES = ("duckdb", "spark")


def _engine(engine: str | None, location: Location) -> None:
    if engine is not None and engine not in ENGINES:
        raise DefinitionError(
            f"engine={engine!r} is not an engine",
            location=location,
            hint="engines: " + ", ".join(ENGINES),
        )


def feature_view(
    name: str,
    *,
    entity: str | Sequence[str],
    timestamp: str,
    sql: str | None = None,
    columns: Mapping[str, str] | None = None,
    checks: Sequence[RowCheck | tuple[RowCheck, ...]] = (),
    row_count: RowCount | None = None,
    max_quarantine_share: float = 0.05,
    online: bool = True,
    partitions: Partitioning | None = None,
    description: str = "",
) -> Table:
    """Declare a feature view: a table with an entity key and an as-of timestamp.

    With ``online=True`` (the default) every run keeps each entity's latest row in the
    project's online store, where serving reads it.
    """
    location = _caller_location()
    check_name(name, location)
    return Table(
        name=name,
        location=location,
        description=description,
        contract=make_contract(columns, checks, row_count, max_quarantine_share, location),
        sql=sql,
        feature=_feature(entity, timestamp, location, online),
        partitions=_partitioning(partitions, location),
    )


def _partitioning(partitions: object, location: Location) -> Partitioning | None:
    if partitions is not None and not isinstance(partitions, Partitioning):
        raise DefinitionError(
            f"partitions={partitions!r} is not a partitioning",
            location=location,
            hint='use gm.daily("day", start="2025-10-01"), gm.monthly(...) or gm.static(...)',
        )
    return partitions


def _feature(
    entity: str | Sequence[str] | None,
    timestamp: str | None,
    location: Location,
    online: bool = True,
) -> FeatureSpec | None:
    if entity is None and timestamp is None:
        return None
    if entity is None or timestamp is None:
        raise DefinitionError("a feature view needs both entity= and timestamp=", location=location)
    keys = (entity,) if isinstance(entity, str) else tuple(entity)
    return FeatureSpec(entity=keys, timestamp=timestamp, online=online)
