"""Keeping the online store in step with feature views: only what changed is written.

For a feature view's new version, the engine computes each entity's latest row as a JSON
object. If the store last synced an older version that still exists, only entities whose
row differs (or that are new) are upserted and entities that disappeared are deleted;
otherwise (never synced, or the store was emptied) everything is written. The same rows
are what a training set reads for a label time after the latest snapshot, so online and
batch features agree (tested).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gristmill.definitions.objects import Table
from gristmill.execution.sql import latest_rows, q
from gristmill.storage.online import OnlineStore, SyncState

if TYPE_CHECKING:  # what only a sync that writes needs: a no-op run checks and returns
    import pyarrow as pa

    from gristmill.execution.engines import Session
    from gristmill.storage.lake import Lake

NEW, OLD = "__gm_online_new", "__gm_online_old"
LATEST_NEW, LATEST_OLD = "__gm_latest_new", "__gm_latest_old"


@dataclass(frozen=True)
class OnlineSync:
    view: str
    version: int
    mode: str
    """``full``, ``incremental`` or ``fresh`` (nothing to do)."""
    upserted: int
    deleted: int
    rows: int
    duration_s: float


def value_columns(view: Table, columns: Sequence[str]) -> tuple[str, ...]:
    """The columns stored per entity: all but the entity key."""
    assert view.feature is not None
    return tuple(c for c in columns if c not in view.feature.entity)


def latest_sql(relation: str, view: Table, columns: Sequence[str]) -> str:
    """Each entity's latest row of ``relation`` as (key, JSON array of values)."""
    assert view.feature is not None
    entity, ts = view.feature.entity, view.feature.timestamp
    key = (
        f"CAST({q(entity[0])} AS VARCHAR)"
        if len(entity) == 1
        else "concat_ws(chr(31), " + ", ".join(f"CAST({q(k)} AS VARCHAR)" for k in entity) + ")"
    )
    values = ", ".join(q(c) for c in value_columns(view, columns))
    return latest_rows(
        relation, entity, ts, f"{key} AS key, json_array({values})::VARCHAR AS value"
    )


def already_synced(
    store: OnlineStore, view: Table, version: int, columns: Sequence[str]
) -> OnlineSync | None:
    """The view's sync when the online store holds ``version`` with these columns already
    (checked from the catalog's schema, without opening the table); None otherwise."""
    state = store.state(view.name)
    stored = value_columns(view, columns)
    if state is not None and state.version == version and state.columns == stored:
        return OnlineSync(view.name, version, "fresh", 0, 0, state.rows, 0.0)
    return None


def sync_view(
    session: Session,
    lake: Lake,
    store: OnlineStore,
    view: Table,
    version: int,
    *,
    scan: bool,
) -> OnlineSync:
    from gristmill.execution.steps import expose

    clock = time.perf_counter()
    state = store.state(view.name)
    expose(session, lake, view.name, version, alias=NEW, scan=scan)
    columns = [c for c, _ in session.columns(NEW)]
    stored = value_columns(view, columns)
    if state is not None and state.version == version and state.columns == stored:
        return OnlineSync(view.name, version, "fresh", 0, 0, state.rows, 0.0)
    session.materialize(LATEST_NEW, latest_sql(NEW, view, columns))
    ((rows,),) = session.rows(f"SELECT count(*) FROM {LATEST_NEW}")
    # rows are compared as stored values: a changed column set means writing everything
    incremental = (
        state is not None and state.columns == stored and lake.has_version(view.name, state.version)
    )
    if incremental:
        assert state is not None
        expose(session, lake, view.name, state.version, alias=OLD, scan=scan)
        old_columns = [c for c, _ in session.columns(OLD)]
        session.materialize(LATEST_OLD, latest_sql(OLD, view, old_columns))
        changed = (
            f"SELECT n.key, n.value FROM {LATEST_NEW} n LEFT JOIN {LATEST_OLD} o USING (key) "
            "WHERE o.value IS DISTINCT FROM n.value ORDER BY n.key"
        )
        deleted = [
            r[0]
            for r in session.rows(
                f"SELECT key FROM {LATEST_OLD} ANTI JOIN {LATEST_NEW} USING (key)"
            )
        ]
    else:
        # in key order: appending to SQLite's B-tree in order is 3x faster than at random
        changed, deleted = f"SELECT key, value FROM {LATEST_NEW} ORDER BY key", []
    counter = _Counter()
    store.write(
        view.name,
        counter.chunks(session.reader(changed, batch_rows=100_000)),
        deleted,
        SyncState(view.name, version, int(rows), stored),
        replace=not incremental,
    )
    for table in (LATEST_NEW, LATEST_OLD):
        session.rows(f"DROP TABLE IF EXISTS {table}")
    return OnlineSync(
        view.name,
        version,
        "incremental" if incremental else "full",
        counter.rows,
        len(deleted),
        int(rows),
        round(time.perf_counter() - clock, 3),
    )


class _Counter:
    def __init__(self) -> None:
        self.rows = 0

    def chunks(self, reader: pa.RecordBatchReader) -> Iterator[tuple[list[str], list[str]]]:
        for batch in reader:
            self.rows += batch.num_rows
            yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


PUSH_ALL, PUSH_ADDED, PUSH_VIEW = "__gm_push_all", "__gm_push_added", "__gm_push_view"


def push_view(
    session: Session,
    lake: Lake,
    store: OnlineStore,
    view: Table,
    version: int,
    *,
    scan: bool,
) -> int:
    """Recompute ``view``'s online rows for the entities that version ``version`` of its
    source added rows for, with the view's own SQL over that version, and upsert them
    (a ``gm.stream_features`` view, right after its source landed rows). Returns how
    many entities were written."""
    from gristmill.execution.steps import expose

    assert view.feature is not None and view.feature.pushed_from is not None
    source = view.feature.pushed_from
    entity = view.feature.entity[0]
    expose(session, lake, source, version, alias=PUSH_ALL, scan=scan)
    now = lake.parquet_files(source, version)
    before = (
        lake.parquet_files(source, version - 1)
        if version > 0 and lake.has_version(source, version - 1)
        else []
    )
    added = sorted(set(now) - set(before or [])) if now is not None and before is not None else []
    if added:
        session.register_parquet(PUSH_ADDED, added)
        touched = f"SELECT DISTINCT {q(entity)} FROM {q(PUSH_ADDED)}"
    else:  # files not known one by one: every entity
        touched = f"SELECT DISTINCT {q(entity)} FROM {q(PUSH_ALL)}"
    session.define(source, f"SELECT * FROM {q(PUSH_ALL)} WHERE {q(entity)} IN ({touched})")
    assert view.sql is not None
    session.define(PUSH_VIEW, view.sql)
    columns = [c for c, _ in session.columns(PUSH_VIEW)]
    stored = value_columns(view, columns)
    state = store.state(view.name)
    if state is None or state.columns != stored:  # the next run's sync writes it all
        state = SyncState(view.name, -1, 0, stored)
    counter = _Counter()
    changed = f"SELECT * FROM ({latest_sql(PUSH_VIEW, view, columns)}) ORDER BY key"
    store.write(
        view.name,
        counter.chunks(session.reader(changed, batch_rows=100_000)),
        [],
        state,
        replace=False,
    )
    return counter.rows
