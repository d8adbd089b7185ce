"""Reconciling the catalog with the lake after a crash.

A run killed between a Delta commit and its catalog record leaves a committed version
the catalog does not know. The commit carries the full materialization record, so it is
adopted as it is: its data is complete and correct, and the next plan sees it as fresh.
Runs left 'running' by a dead owner are closed as 'crashed' by the run coordination
(``storage/catalog/runs.py``) before the next run starts; their count is passed here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gristmill.definitions.graph import Graph
from gristmill.errors import LakeError
from gristmill.storage.catalog import Catalog, Materialization
from gristmill.storage.lake import Lake


@dataclass(frozen=True)
class Recovery:
    crashed_runs: int
    adopted: tuple[tuple[str, int], ...]


def reconcile(graph: Graph, catalog: Catalog, lake: Lake, crashed_runs: int = 0) -> Recovery:
    known = catalog.latest_versions()
    adopted: list[tuple[str, int]] = []
    for name in graph.order:
        last = known.get(name)
        if not lake.has_commit_after(name, last):
            continue
        for commit in lake.commits(name, after=last):
            if commit.record is None:
                raise LakeError(
                    f"table {name!r} has version {commit.version} written outside Gristmill",
                    hint="restore the table folder, or rebuild it with --full-refresh",
                )
            materialization = Materialization.from_record(dict(commit.record), commit.version)
            rows = lake.count(name, commit.version)
            previous = catalog.latest(name)
            materialization = replace(
                materialization,
                rows=rows,
                rows_added=rows
                - (previous.rows if previous and materialization.mode == "append" else 0),
                schema=[
                    {"name": f.name, "type": str(f.type)} for f in lake.schema(name, commit.version)
                ],
            )
            catalog.record_materialization(materialization)
            adopted.append((name, commit.version))
    return Recovery(crashed_runs=crashed_runs, adopted=tuple(adopted))
