"""Run coordination in the catalog, over SQLite and a real PostgreSQL: the queue, claims,
leases, cancel requests and the closing of runs whose owner is gone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gristmill.errors import RunInProgressError, RunStateError, UnknownRunError
from gristmill.storage.catalog import Catalog, StepRecord
from gristmill.storage.catalog.runs import RunRequest

LEASE = timedelta(seconds=60)
ME, PEER = "host-a:100:1", "host-b:200:2"


def everyone_alive(owner: str) -> bool:
    return True


def build(selection: str = "+t", priority: int = 0) -> RunRequest:
    return RunRequest("build", selection, params={"select": [selection]}, priority=priority)


def test_a_run_is_started_renewed_and_closed_by_its_owner_only(url: str) -> None:
    catalog = Catalog(url)
    store = catalog.run_store
    record, closed = store.start("aa01", build(), ME, LEASE, everyone_alive)
    assert (record.status, record.owner, record.kind, closed) == ("running", ME, "build", 0)
    assert record.started_at is not None and record.lease_until > record.started_at
    first_lease = record.lease_until
    renewed = store.heartbeat("aa01", ME, LEASE)
    assert renewed is not None and renewed.lease_until >= first_lease
    assert store.heartbeat("aa01", PEER, LEASE) is None  # not the peer's run
    assert store.finish("aa01", PEER, "success") is False
    assert store.finish("aa01", ME, "success", {"rows": 5}) is True
    done = store.get("aa01")
    assert (done.status, done.summary, done.lease_until) == ("success", {"rows": 5}, None)
    assert done.finished_at is not None
    assert store.finish("aa01", ME, "failed") is False  # closed once
    assert store.heartbeat("aa01", ME, LEASE) is None
    catalog.close()


def test_one_run_at_a_time_and_a_live_peer_is_never_closed(url: str) -> None:
    catalog = Catalog(url)
    store = catalog.run_store
    store.start("bb01", build(), PEER, LEASE, everyone_alive)
    with pytest.raises(RunInProgressError, match="bb01.*host-b:200:2"):
        store.start("bb02", build(), ME, LEASE, everyone_alive)
    assert store.get("bb01").status == "running"
    assert [r.run_id for r in store.list()] == ["bb01"]  # the refused run left no row
    catalog.close()


def test_runs_of_a_dead_owner_or_an_expired_lease_are_closed_as_crashed(url: str) -> None:
    catalog = Catalog(url)
    store = catalog.run_store
    store.start("cc01", build(), PEER, LEASE, everyone_alive)
    catalog.record_step(StepRecord("cc01", "t", "sql", "running", "stale", *[None] * 4))
    catalog.record_step(StepRecord("cc01", "u", "sql", "success", "stale", *[None] * 4))
    record, closed = store.start("cc02", build(), ME, LEASE, lambda owner: owner != PEER)
    assert closed == 1 and record.status == "running"
    crashed = store.get("cc01")
    assert crashed.status == "crashed" and "stopped before the run finished" in crashed.error
    assert [s.status for s in catalog.steps("cc01")] == ["crashed", "success"]
    assert store.finish("cc01", PEER, "success") is False  # the late owner cannot reopen it
    store.finish("cc02", ME, "success")
    # a peer of another host that stops heartbeating: closed once its lease has run out
    store.start("cc03", build(), PEER, timedelta(seconds=-1), everyone_alive)
    _, closed = store.start("cc04", build(), ME, LEASE, everyone_alive)
    assert closed == 1 and store.get("cc03").status == "crashed"
    catalog.close()


def test_the_queue_is_claimed_by_priority_then_age_and_only_when_nothing_runs(url: str) -> None:
    catalog = Catalog(url)
    store = catalog.run_store
    store.enqueue("dd01", build("+a"))
    store.enqueue("dd02", build("+b", priority=5))
    store.enqueue("dd03", build("+c"))
    queued = store.list(status="queued")
    assert [r.run_id for r in queued] == ["dd03", "dd02", "dd01"]  # newest first
    assert all(r.started_at is None and r.owner is None for r in queued)
    order = []
    while (claimed := store.claim(ME, LEASE, everyone_alive)) is not None:
        record, _ = claimed
        assert record.status == "running" and record.owner == ME
        assert store.claim(PEER, LEASE, everyone_alive) is None  # one runs at a time
        order.append(record.run_id)
        store.finish(record.run_id, ME, "success")
    assert order == ["dd02", "dd01", "dd03"]
    assert store.list(status="queued") == []
    assert {r.status for r in store.list(kind="build")} == {"success"}
    catalog.close()


def test_cancel_a_queued_run_a_running_one_and_not_an_ended_one(url: str) -> None:
    catalog = Catalog(url)
    store = catalog.run_store
    store.enqueue("ee01", build())
    cancelled = store.cancel("ee01")
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert store.claim(ME, LEASE, everyone_alive) is None  # a cancelled run is never claimed
    store.start("ee02", build(), ME, LEASE, everyone_alive)
    with pytest.raises(UnknownRunError, match="matches several runs"):
        store.cancel("ee0")
    assert store.get("ee02").cancel_requested_at is None
    catalog.close()


def test_cancel_by_prefix_and_cancel_requests(url: str) -> None:
    catalog = Catalog(url)
    store = catalog.run_store
    store.start("ff01", build(), ME, LEASE, everyone_alive)
    asked = store.cancel("ff")
    assert asked.status == "running" and asked.cancel_requested_at is not None
    assert store.heartbeat("ff01", ME, LEASE).cancel_requested_at == asked.cancel_requested_at
    store.finish("ff01", ME, "cancelled")
    with pytest.raises(RunStateError, match="already ended \\(cancelled\\)"):
        store.cancel("ff01")
    catalog.close()


def test_a_run_id_is_a_unique_hex_prefix(url: str) -> None:
    catalog = Catalog(url)
    store = catalog.run_store
    store.enqueue("ab12", build())
    store.enqueue("ab34", build())
    assert store.get("ab1").run_id == "ab12"
    with pytest.raises(UnknownRunError, match="'ab' matches several runs \\(ab12, ab34\\)"):
        store.get("ab")
    with pytest.raises(UnknownRunError, match="no run matches 'cd'"):
        store.get("cd")
    assert store.get(" AB1 ").run_id == "ab12"  # as a user may paste it
    for bad in ("", "ab%", "a_", "x" * 40, "ab-12"):
        with pytest.raises(UnknownRunError, match="is not a run id"):
            store.get(bad)
    with pytest.raises(UnknownRunError):
        store.cancel("zz")
    catalog.close()


CLAIMER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import timedelta
    from gristmill.storage.catalog import Catalog
    catalog = Catalog(sys.argv[1])
    owner, got, idle = sys.argv[2], [], 0
    while idle < 40:
        claimed = catalog.run_store.claim(owner, timedelta(seconds=60), lambda o: True)
        if claimed is None:
            idle += 1
            time.sleep(0.01)
            continue
        idle = 0
        got.append(claimed[0].run_id)
        catalog.run_store.finish(claimed[0].run_id, owner, "success")
    print(json.dumps(got))
    """
)


def test_concurrent_claimers_in_separate_processes_take_each_run_once(url: str) -> None:
    catalog = Catalog(url)
    queued = [f"{i:04x}" for i in range(40)]
    for run_id in queued:
        catalog.run_store.enqueue(run_id, build())
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, f"host-{i}:{i}:0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    claimed = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    every = [run_id for got in claimed for run_id in got]
    assert sorted(every) == queued  # each exactly once, none lost
    runs = catalog.run_store.list(limit=100)
    owners = {r.run_id: r.owner for r in runs}
    for i, got in enumerate(claimed):
        assert all(owners[run_id] == f"host-{i}:{i}:0" for run_id in got)
    catalog.close()


def test_upgrading_keeps_old_runs_and_their_steps(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    import gristmill.storage.catalog.store as store_module

    config = Config()
    folder = Path(store_module.__file__).parent / "migrations"
    config.set_main_option("script_location", str(folder))
    engine = create_engine(url)
    started = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        conn.execute(
            text(
                "insert into runs (run_id, started_at, status, selection, full_refresh) "
                "values ('01d1', :t, 'success', '+t', false), ('01d2', :t, 'running', '', true)"
            ),
            {"t": started},
        )
        conn.execute(
            text(
                "insert into step_runs (run_id, table_name, kind, status, reason) "
                "values ('01d1', 't', 'sql', 'success', 'never built')"
            )
        )
    engine.dispose()
    catalog = Catalog(url)
    old = catalog.run_store.get("01d1")
    assert (old.kind, old.status, old.created_at, old.started_at) == (
        "build",
        "success",
        started,
        started,
    )
    assert [s.status for s in catalog.steps("01d1")] == ["success"]
    # a run left 'running' by an older release has no owner: it is closed by the next start
    _, closed = catalog.run_store.start("ab01", build(), ME, LEASE, everyone_alive)
    assert closed == 1 and catalog.run_store.get("01d2").status == "crashed"
    catalog.close()
