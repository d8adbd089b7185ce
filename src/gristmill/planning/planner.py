"""The planner: graph + catalog state -> which steps run and why, as data.

It reads state through ``CatalogReader`` only; the runner performs the side effects.
A step is fresh when its code hash and its exact input versions (for sources: the files)
equal those of its latest materialization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from gristmill.definitions.graph import Graph
from gristmill.definitions.objects import Definition, StepKind, Table
from gristmill.definitions.sources import FileSource, Source
from gristmill.errors import InvalidInputError
from gristmill.planning.fingerprint import code_hash
from gristmill.planning.partitions import (
    ChangedRanges,
    PartitionAction,
    PartitionTask,
    plan_partitions,
)
from gristmill.storage.catalog import CatalogReader, IngestedFile, Materialization


class Action(StrEnum):
    RUN = "run"
    SKIP = "skip"


class WriteMode(StrEnum):
    OVERWRITE = "overwrite"
    APPEND = "append"
    MERGE = "merge"
    """Rows upserted by key (a database source's increment)."""


@dataclass(frozen=True)
class SourceOffer:
    """What a source offers now, found by looking outside before planning (the planner
    itself does no I/O). Files: every file the glob matches. Other kinds decide whether
    anything is new themselves (they compare the server's values with their state)."""

    files: tuple[IngestedFile, ...] = ()
    news: str | None = None
    """Why there is something to read (None: nothing new)."""
    unchanged: str = "nothing new"
    """Why there is nothing to read."""


@dataclass(frozen=True)
class PlannedStep:
    """One step of a plan: what to do with a table, and why."""

    name: str
    kind: StepKind
    action: Action
    reason: str
    code_hash: str
    mode: WriteMode = WriteMode.OVERWRITE
    files: tuple[IngestedFile, ...] = ()
    """For sources: the files this step ingests."""
    dependencies: tuple[str, ...] = ()
    partitions: tuple[PartitionTask, ...] = ()
    """For partitioned tables: each partition considered, built or skipped, and why."""
    engine: str | None = None
    """Where it would run (``duckdb``, ``spark``), for a dry run; None: not asked."""
    engine_reason: str | None = None

    @property
    def to_build(self) -> list[PartitionTask]:
        return [t for t in self.partitions if t.action is PartitionAction.BUILD]


@dataclass(frozen=True)
class Backfill:
    """Build a range of a partitioned table's partitions (None: from the first/to the
    latest); ``force`` rebuilds fresh ones too."""

    table: str
    first: str | None = None
    last: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Plan:
    steps: tuple[PlannedStep, ...]
    selection: tuple[str, ...] = field(default=())
    full_refresh: bool = False
    force: tuple[str, ...] = ()
    backfill: Backfill | None = None

    @property
    def to_run(self) -> list[PlannedStep]:
        return [s for s in self.steps if s.action is Action.RUN]

    @property
    def is_noop(self) -> bool:
        return not self.to_run

    def step(self, name: str) -> PlannedStep:
        return next(s for s in self.steps if s.name == name)


def build_plan(
    graph: Graph,
    state: CatalogReader,
    root: Path,
    *,
    selection: Sequence[str] = (),
    full_refresh: bool = False,
    force: Sequence[str] = (),
    backfill: Backfill | None = None,
    changed_ranges: ChangedRanges | None = None,
    now: datetime | None = None,
    offers: Mapping[str, SourceOffer] | None = None,
) -> Plan:
    """Plan ``selection`` (all by default); names in ``force`` run even when fresh.

    A partitioned table's step builds its latest partition (a full refresh: all of them);
    ``backfill`` plans just that table, over its range. ``changed_ranges`` tells which
    partitions an input's new version touched (without it: all of them). ``offers``: what
    each selected source offers now (``execution.sources.discover``)."""
    chosen: Sequence[str]
    if backfill is not None:
        selection = [backfill.table]
        _require_partitioned(graph, backfill.table)
        chosen = [backfill.table]
    else:
        chosen = graph.select(selection)
    found = state.latest_many(list(chosen))
    latest = {name: found.get(name) for name in chosen}
    versions = state.latest_versions()
    running: set[str] = set()
    steps: list[PlannedStep] = []
    for name in chosen:
        node = graph.nodes[name]
        if isinstance(node, Table) and node.partitions is not None:
            step = plan_partitioned_step(
                node,
                state,
                versions,
                running,
                full_refresh or name in force,
                full_refresh,
                backfill,
                changed_ranges,
                now,
            )
        else:
            offer = (offers or {}).get(name, SourceOffer())
            step = _plan_step(node, latest[name], versions, running, offer, state, full_refresh)
        if name in force and step.action is Action.SKIP:
            step = replace(step, action=Action.RUN, reason=f"requested ({step.reason})")
            if isinstance(node, Source):  # nothing new: read everything again
                offered = (offers or {}).get(name, SourceOffer()).files
                step = replace(step, mode=WriteMode.OVERWRITE, files=offered)
        if step.action is Action.RUN:
            running.add(name)
        steps.append(step)
    return Plan(
        steps=tuple(steps),
        selection=tuple(selection),
        full_refresh=full_refresh,
        force=tuple(force),
        backfill=backfill,
    )


def _require_partitioned(graph: Graph, name: str) -> None:
    node = graph.nodes.get(name)
    if node is None:
        from gristmill.errors import UnknownTableError

        raise UnknownTableError(
            f"the project defines no table {name!r}", hint="`gristmill tables` lists them"
        )
    if not isinstance(node, Table) or node.partitions is None:
        partitioned = sorted(
            n for n, d in graph.nodes.items() if isinstance(d, Table) and d.partitions
        )
        raise InvalidInputError(
            f"table {name!r} is not partitioned: there is nothing to backfill",
            hint=(
                f"partitioned tables: {', '.join(partitioned)}"
                if partitioned
                else 'declare partitions=gm.daily("day", start="2025-10-01") on a table'
            )
            + f"; `gristmill run +{name}` rebuilds it whole",
        )


def plan_partitioned_step(
    node: Table,
    state: CatalogReader,
    versions: dict[str, int],
    running: set[str],
    force: bool,
    full_refresh: bool,
    backfill: Backfill | None,
    changed_ranges: ChangedRanges | None,
    now: datetime | None,
) -> PlannedStep:
    """A partitioned table's step: each partition to build or skip, and why. The runner
    plans it again once its upstream committed in the same run (with the versions it
    produced), so that only the partitions the new rows touch are built."""
    partitioning = node.partitions
    assert partitioning is not None
    if backfill is not None:
        parts = partitioning.between(backfill.first, backfill.last, now)
        force = force or backfill.force
        if not parts:
            every = partitioning.all(now)
            span = f"{every[0].key} to {every[-1].key}" if every else "none yet"
            raise InvalidInputError(
                f"no partition of {node.name} falls in "
                f"{backfill.first or 'the first'}..{backfill.last or 'the latest'}",
                hint=f"its partitions: {span}",
            )
        scope = f"backfill of {len(parts)} partition(s)"
    else:
        # a plain run brings every partition up to date: only the missing, failed and
        # stale ones are built (forced: the latest ones too)
        parts = partitioning.all(now)
        scope = "partitions"
    forced = {p.key for p in partitioning.latest(now)} if force and backfill is None else set()
    if full_refresh:
        forced = {p.key for p in parts}
    current = code_hash(node)
    records = state.partitions(node.name)
    tasks = plan_partitions(
        partitioning,
        parts,
        records,
        code_hash=current,
        dependencies=node.dependencies,
        versions=versions,
        upstream_changing=sorted(running),
        changed_ranges=changed_ranges or (lambda *_: None),
        force=force if backfill is not None else False,
        forced=forced,
    )
    build = [t for t in tasks if t.action is PartitionAction.BUILD]
    if not parts:
        reason = "no partition is due yet (the first one is not complete)"
    elif build:
        shown = "; ".join(f"{t.key}: {t.reason}" for t in build[:3])
        more = f"; {len(build) - 3} more" if len(build) > 3 else ""
        reason = f"{scope}: {len(build)} of {len(parts)} to build ({shown}{more})"
    else:
        reason = f"{scope}: {len(parts)} fresh"
    return PlannedStep(
        node.name,
        node.kind,
        Action.RUN if build else Action.SKIP,
        reason,
        current,
        dependencies=node.dependencies,
        partitions=tuple(tasks),
    )


def _plan_step(
    node: Definition,
    last: Materialization | None,
    versions: dict[str, int],
    running: set[str],
    offer: SourceOffer,
    state: CatalogReader,
    full_refresh: bool,
) -> PlannedStep:
    current = code_hash(node)
    if isinstance(node, FileSource):
        return _plan_files(node, last, current, offer.files, state, full_refresh)
    if isinstance(node, Source):
        return _plan_source(node, last, current, offer, full_refresh)

    def run(reason: str) -> PlannedStep:
        return PlannedStep(
            node.name, node.kind, Action.RUN, reason, current, dependencies=node.dependencies
        )

    if full_refresh:
        return run("full refresh")
    if last is None:
        return run("never built")
    if last.code_hash != current:
        return run("code changed")
    changing = sorted(d for d in node.dependencies if d in running)
    if changing:
        return run(f"upstream {_names(changing)} will change")
    moved = [
        f"{d} v{last.inputs.get(d)} -> v{versions[d]}"
        for d in node.dependencies
        if d in versions and last.inputs.get(d) != versions[d]
    ]
    if moved:
        return run(f"inputs changed: {', '.join(moved)}")
    return PlannedStep(
        node.name,
        node.kind,
        Action.SKIP,
        f"fresh (v{last.version})",
        current,
        dependencies=node.dependencies,
    )


def _plan_source(
    node: Source, last: Materialization | None, current: str, offer: SourceOffer, full: bool
) -> PlannedStep:
    """A source that decides itself what is new (a database): read everything on a full
    refresh, the first time or after its definition changed; else what its offer says."""

    def step(action: Action, reason: str, mode: WriteMode) -> PlannedStep:
        return PlannedStep(node.name, node.kind, action, reason, current, mode)

    if full:
        return step(Action.RUN, "full refresh", WriteMode.OVERWRITE)
    if last is None:
        return step(Action.RUN, "never extracted", WriteMode.OVERWRITE)
    if last.code_hash != current:
        return step(Action.RUN, "definition changed: extracting everything", WriteMode.OVERWRITE)
    if offer.news is None:
        return step(Action.SKIP, f"{offer.unchanged} (v{last.version})", WriteMode.MERGE)
    return step(Action.RUN, offer.news, WriteMode.MERGE)


def _plan_files(
    node: FileSource,
    last: Materialization | None,
    current: str,
    offered: Sequence[IngestedFile],
    state: CatalogReader,
    full_refresh: bool,
) -> PlannedStep:
    files = list(offered)

    def step(
        action: Action, reason: str, mode: WriteMode, todo: Iterable[IngestedFile]
    ) -> PlannedStep:
        return PlannedStep(node.name, node.kind, action, reason, current, mode, tuple(todo))

    if full_refresh:
        return step(Action.RUN, "full refresh", WriteMode.OVERWRITE, files)
    if last is None:
        return step(Action.RUN, "never ingested", WriteMode.OVERWRITE, files)
    if last.code_hash != current:
        return step(
            Action.RUN, "definition changed: re-ingesting all files", WriteMode.OVERWRITE, files
        )
    seen = {f.path: f for f in state.ingested_files(node.name)}
    changed = [
        f.path
        for f in files
        if f.path in seen and (seen[f.path].size, seen[f.path].mtime_ns) != (f.size, f.mtime_ns)
    ]
    if changed:
        return step(
            Action.RUN,
            f"{len(changed)} ingested file(s) changed ({changed[0]}): re-ingesting all files",
            WriteMode.OVERWRITE,
            files,
        )
    new = [f for f in files if f.path not in seen]
    if new:
        return step(Action.RUN, f"{len(new)} new file(s)", WriteMode.APPEND, new)
    return step(Action.SKIP, f"no new files (v{last.version})", WriteMode.APPEND, ())


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
