"""The planner: graph + catalog state -> which steps run and why, as data.

It reads state through ``CatalogReader`` only; the runner performs the side effects.
A step is fresh when its code hash and its exact input versions (for sources: the files)
equal those of its latest materialization.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from gristmill.definitions.graph import Graph
from gristmill.definitions.objects import Definition, Source, StepKind
from gristmill.planning.fingerprint import code_hash
from gristmill.planning.sources import list_files
from gristmill.storage.catalog import CatalogReader, IngestedFile, Materialization


class Action(StrEnum):
    RUN = "run"
    SKIP = "skip"


class WriteMode(StrEnum):
    OVERWRITE = "overwrite"
    APPEND = "append"


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


@dataclass(frozen=True)
class Plan:
    steps: tuple[PlannedStep, ...]
    selection: tuple[str, ...] = field(default=())

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
) -> Plan:
    """Plan ``selection`` (all by default); names in ``force`` run even when fresh."""
    chosen = graph.select(selection)
    latest = {name: state.latest(name) for name in chosen}
    versions = state.latest_versions()
    running: set[str] = set()
    steps: list[PlannedStep] = []
    for name in chosen:
        node = graph.nodes[name]
        step = _plan_step(node, latest[name], versions, running, root, state, full_refresh)
        if name in force and step.action is Action.SKIP:
            step = replace(step, action=Action.RUN, reason=f"requested ({step.reason})")
        if step.action is Action.RUN:
            running.add(name)
        steps.append(step)
    return Plan(steps=tuple(steps), selection=tuple(selection))


def _plan_step(
    node: Definition,
    last: Materialization | None,
    versions: dict[str, int],
    running: set[str],
    root: Path,
    state: CatalogReader,
    full_refresh: bool,
) -> PlannedStep:
    current = code_hash(node)
    if isinstance(node, Source):
        return _plan_source(node, last, current, root, state, full_refresh)

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
    node: Source,
    last: Materialization | None,
    current: str,
    root: Path,
    state: CatalogReader,
    full_refresh: bool,
) -> PlannedStep:
    files = list_files(root, node)

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
