"""Data quality of a table's newest version: volume, quarantine share, freshness, drift.

The newest version is compared with the one before: its row count, the share its
contract quarantined, how old its newest row is, and per column the PSI of the rows it
added (for an appended version: the Parquet files it added) against the rows before,
one column at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from gristmill.execution.monitoring.drift import Pair
from gristmill.execution.monitoring.findings import Finding
from gristmill.execution.monitoring.stats import column_drift
from gristmill.storage.catalog import Materialization


def table_findings(
    latest: Materialization,
    previous: Materialization | None,
    *,
    volume_change: float,
    max_quarantine_share: float,
) -> list[Finding]:
    seen = latest.rows_added + latest.quarantined
    out = [
        Finding("table", "rows", float(latest.rows)),
        Finding(
            "table",
            "quarantine_share",
            latest.quarantined / seen if seen else 0.0,
            threshold=max_quarantine_share,
        ),
    ]
    if previous is not None and previous.rows:
        change = abs(latest.rows - previous.rows) / previous.rows
        out.append(Finding("table", "volume_change", change, threshold=volume_change))
    return out


def freshness_finding(newest: datetime | None, now: datetime, limit: timedelta) -> Finding:
    """Hours since the newest row (or version); alerts past ``limit``."""
    if newest is None:
        return Finding("table", "freshness_hours", None, threshold=limit.total_seconds() / 3600)
    age = (now - newest).total_seconds() / 3600
    return Finding("table", "freshness_hours", age, threshold=limit.total_seconds() / 3600)


def added_and_kept(
    latest_files: Sequence[str], previous_files: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The files the newest version added and those it kept (all of both if rewritten)."""
    before = set(previous_files)
    added = [f for f in latest_files if f not in before]
    kept = [f for f in latest_files if f in before]
    if not kept:  # rewritten: compare whole versions
        return list(latest_files), list(previous_files)
    return added, kept


def file_pairs(added: Sequence[str], kept: Sequence[str], columns: Sequence[str]) -> Iterator[Pair]:
    """Per column, the kept rows (reference) and the added rows (current), read one column
    at a time: a table of any size costs one column of memory."""
    for name in columns:
        yield name, _read(kept, name), _read(added, name)


def column_findings(
    pairs: Iterable[Pair], psi_threshold: float
) -> tuple[list[Finding], dict[str, dict[str, Any]]]:
    out: list[Finding] = []
    charts: dict[str, dict[str, Any]] = {}
    for name, before, added in pairs:
        drift = column_drift(name, before, added)
        charts[name] = {"kind": drift.kind.value, **drift.histogram}
        out.append(Finding(name, "psi", drift.values.get("psi"), threshold=psi_threshold))
        out.append(Finding(name, "null_rate", drift.values.get("null_rate")))
    return out, charts


def _read(files: Sequence[str], column: str) -> pa.ChunkedArray:
    if not files:
        return pa.chunked_array([], pa.null())
    return pads.dataset(list(files), format="parquet").to_table(columns=[column])[column]
