"""Which partitions of a partitioned table to build, and why, as data.

A partition is fresh when it was built successfully by the current code, and none of its
inputs changed *within its range* since: an input's new version is compared with the one
the partition was built from file by file (the Delta log's statistics say the range of the
partition column in each added or removed file), so new transactions for October leave the
other 364 days of a daily table fresh. An input without statistics for the column, or
whose old version is gone, makes every partition built from it stale: never a stale
partition reported fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from gristmill.definitions.partitions import Partition, Partitioning
from gristmill.errors import GristmillError
from gristmill.storage.catalog import PartitionRecord

ChangedRanges = Callable[[str, int, int, str], "list[tuple[Any, Any]] | None"]
"""(input, old version, new version, column) -> the changed files' [min, max] or None."""


class PartitionAction(StrEnum):
    BUILD = "build"
    SKIP = "skip"


@dataclass(frozen=True)
class PartitionTask:
    partition: Partition
    action: PartitionAction
    reason: str

    @property
    def key(self) -> str:
        return self.partition.key


def plan_partitions(
    partitioning: Partitioning,
    parts: Sequence[Partition],
    records: dict[str, PartitionRecord],
    *,
    code_hash: str,
    dependencies: Sequence[str],
    versions: dict[str, int],
    upstream_changing: Sequence[str] = (),
    changed_ranges: ChangedRanges,
    force: bool = False,
    forced: set[str] | frozenset[str] = frozenset(),
) -> list[PartitionTask]:
    """One task per partition in ``parts``: build it (missing, failed, stale) or skip it;
    ``force`` (or a key in ``forced``): build it anyway."""
    ranges: dict[tuple[str, int, int], list[tuple[Any, Any]] | None] = {}

    def changes(dep: str, old: int, new: int) -> list[tuple[Any, Any]] | None:
        if (dep, old, new) not in ranges:
            try:
                column = partitioning.upstream_column(dep)
                ranges[dep, old, new] = changed_ranges(dep, old, new, column)
            except GristmillError:  # an old version gone (vacuumed): anything may differ
                ranges[dep, old, new] = None
        return ranges[dep, old, new]

    tasks = []
    for part in parts:
        record = records.get(part.key)
        reason = _stale(
            partitioning,
            part,
            record,
            code_hash,
            dependencies,
            versions,
            upstream_changing,
            changes,
        )
        if force or part.key in forced:
            reason = reason or "requested"
        if reason:
            tasks.append(PartitionTask(part, PartitionAction.BUILD, reason))
        else:
            assert record is not None
            tasks.append(PartitionTask(part, PartitionAction.SKIP, f"fresh (v{record.version})"))
    return tasks


def _stale(
    partitioning: Partitioning,
    part: Partition,
    record: PartitionRecord | None,
    code_hash: str,
    dependencies: Sequence[str],
    versions: dict[str, int],
    upstream_changing: Sequence[str],
    changes: Callable[[str, int, int], list[tuple[Any, Any]] | None],
) -> str:
    if record is None:
        return "never built"
    if record.status != "success":
        first = (record.error or "").strip().splitlines()[:1]
        return f"failed in run {record.run_id[:8]}" + (f": {first[0][:120]}" if first else "")
    if record.code_hash != code_hash:
        return "code changed"
    changing = [d for d in dependencies if d in upstream_changing]
    if changing:
        return f"upstream {', '.join(repr(d) for d in changing)} will change"
    lo, hi = partitioning.value_range(part)
    for dep in dependencies:
        old, new = record.inputs.get(dep), versions.get(dep)
        if new is None or old == new:
            continue
        if old is None:
            return f"input {dep!r} is new"
        changed = changes(dep, old, new)
        if changed is None:
            column = partitioning.upstream_column(dep)
            return f"input {dep} v{old} -> v{new} (no statistics of a column {column!r} in it)"
        if any(overlaps(a, b, lo, hi, partitioning) for a, b in changed):
            return f"input {dep} v{old} -> v{new} changed rows in this partition"
    return ""


def overlaps(low: Any, high: Any, start: Any, end: Any, partitioning: Partitioning) -> bool:
    """Whether a file whose column spans [low, high] may hold rows of [start, end)."""
    from gristmill.definitions.partitions import Granularity

    try:
        if partitioning.granularity is Granularity.STATIC:
            return bool(str(low) <= start <= str(high))
        a, b = _instant(low), _instant(high)
        return bool(a < end and b >= start)
    except (TypeError, ValueError):
        return True  # values that do not compare: assume the worst


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime.combine(value, datetime.min.time())
    return datetime.fromisoformat(str(value))


def chunks(tasks: Sequence[PartitionTask], size: int) -> list[list[Partition]]:
    """The partitions to build, in order, grouped into batches of at most ``size``
    neighbours (one query and one commit each)."""
    out: list[list[Partition]] = []
    for task in tasks:
        if task.action is not PartitionAction.BUILD:
            if out and out[-1]:
                out.append([])
            continue
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(task.partition)
    return [c for c in out if c]
