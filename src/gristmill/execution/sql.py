"""Small SQL builders the steps share (DuckDB dialect)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def q(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def latest_rows(
    relation: str,
    entity: Sequence[str],
    timestamp: str,
    select: str,
    *,
    as_of: datetime | None = None,
) -> str:
    """``select`` over each entity's latest row of ``relation`` (at or before ``as_of``).

    One definition of "the latest row per entity", shared by batch scoring and the online
    store, so both read the same row for an entity.
    """
    where = f" WHERE {q(timestamp)} <= TIMESTAMP '{as_of.isoformat(sep=' ')}'" if as_of else ""
    partition = ", ".join(q(k) for k in entity)
    return (
        f"SELECT {select} FROM {q(relation)}{where} "
        f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {q(timestamp)} DESC) = 1"
    )
