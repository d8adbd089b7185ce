"""Runs coordinated in the catalog, end to end with real processes and real signals: the
queue and the scheduler's tick, cancel, a killed run's lease, one run at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gristmill.workspace import Workspace
from tests.conftest import gm, gm_json, spawn, write_project
from tests.test_crash import SLOW_MODULE, make

pytestmark = pytest.mark.slow


def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_queued_runs_wait_for_the_scheduler_and_run_by_priority(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    low = gm_json(root, "run", "+per_user", "--queue")
    high = gm_json(root, "run", "--queue", "--priority", "5")
    assert low["status"] == high["status"] == "queued" and low["started_at"] is None
    assert low["requested_by"].startswith("user:") and low["kind"] == "build"
    queued = gm_json(root, "runs", "--status", "queued")
    assert [r["run_id"] for r in queued] == [high["run_id"], low["run_id"]]
    assert Workspace.open(root).catalog.latest("txns") is None  # nothing ran yet
    tick = gm_json(root, "scheduler", "--once")
    assert [r["run_id"] for r in tick["ran"]] == [high["run_id"], low["run_id"]]
    assert [r["status"] for r in tick["ran"]] == ["success", "noop"]
    assert tick["queued"] == 0
    assert tick["ran"][0]["summary"]["steps"] == {"success": 4}
    one = gm_json(root, "runs", high["run_id"][:8])
    assert one["status"] == "success" and one["started_at"] >= one["created_at"]
    assert {s["table"] for s in one["steps"]} == {"txns", "per_user", "top_users", "slow_copy"}
    assert gm_json(root, "runs", "--status", "queued") == []
    again = gm(root, "scheduler", "--once")
    assert again.returncode == 0 and "0 run(s) done" in again.stdout


def test_a_cancelled_queued_run_never_runs(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    queued = gm_json(root, "run", "--queue")
    cancelled = gm(root, "cancel", queued["run_id"][:10])
    assert cancelled.returncode == 0
    assert f"cancelled run {queued['run_id'][:12]}" in cancelled.stdout
    assert gm_json(root, "scheduler", "--once")["ran"] == []
    assert gm_json(root, "runs", queued["run_id"])["status"] == "cancelled"
    twice = gm(root, "cancel", queued["run_id"])
    assert twice.returncode == 2
    assert "already ended (cancelled)" in twice.stderr and "Traceback" not in twice.stderr


AFTER_SLOW = """
@gm.table
def after_slow(slow_copy: pa.Table) -> pa.Table:
    return slow_copy
"""


def test_cancel_stops_a_running_run_before_its_next_step(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_project(root, module=SLOW_MODULE + AFTER_SLOW)
    (root / "sleep").write_text("3")
    proc = spawn(root, "run", "--json")
    wait_for(root / "slow_started", proc)
    running = gm_json(root, "runs", "--status", "running")
    assert len(running) == 1
    asked = gm(root, "cancel", running[0]["run_id"])
    assert asked.returncode == 0 and "stops before its next step" in asked.stdout
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    report = json.loads(out)
    assert report["summary"]["status"] == "cancelled"
    run = gm_json(root, "runs", running[0]["run_id"])
    assert run["status"] == "cancelled" and run["cancel_requested"] is True
    assert run["finished_at"] is not None
    steps = {s["table"]: s["status"] for s in run["steps"]}
    assert steps["slow_copy"] == "success"  # a running step finishes
    assert steps["after_slow"] == "cancelled"  # the next one never starts
    assert Workspace.open(root).catalog.latest("after_slow") is None


def test_a_run_killed_with_sigkill_frees_the_project_at_once(tmp_path: Path) -> None:
    root = make(tmp_path / "p", sleep=60)
    proc = spawn(root, "run")
    wait_for(root / "slow_started", proc)
    busy = gm(root, "run")
    assert busy.returncode == 1
    assert "this run cannot start now: 1 run(s) running, the limit is 1" in busy.stderr
    assert f":{proc.pid}:" in busy.stderr  # names the owner
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (root / "sleep").write_text("0")
    rerun = gm_json(root, "run")  # at once: the owner is a dead process of this host
    assert rerun["summary"]["status"] == "success"
    assert rerun["summary"]["crashed_runs_closed"] == 1
    statuses = [r["status"] for r in gm_json(root, "runs")]
    assert statuses == ["success", "crashed"]


def test_the_scheduler_stops_on_sigterm_after_its_current_run(tmp_path: Path) -> None:
    root = make(tmp_path / "p", sleep=2)
    daemon = spawn(root, "scheduler", "--interval", "0.2")
    queued = gm_json(root, "run", "--queue")
    wait_for(root / "slow_started", daemon)
    daemon.send_signal(signal.SIGTERM)  # mid-run: the run finishes, then the daemon stops
    out, err = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, err
    assert "SIGTERM: stopping after the current run" in err
    assert f"run {queued['run_id'][:12]} build everything: success" in out
    assert gm_json(root, "runs", queued["run_id"])["status"] == "success"


def test_a_second_signal_cancels_the_current_run(tmp_path: Path) -> None:
    root = make(tmp_path / "p", sleep=6)
    daemon = spawn(root, "scheduler", "--interval", "0.2")
    queued = gm_json(root, "run", "--queue")
    wait_for(root / "slow_started", daemon)
    daemon.send_signal(signal.SIGINT)
    time.sleep(0.5)
    daemon.send_signal(signal.SIGINT)
    _, err = daemon.communicate(timeout=120)
    assert daemon.returncode == 130, err
    assert "Traceback" not in err and "internal error" not in err
    assert not list((root / ".gristmill" / "logs").glob(".running-*"))  # the log was kept
    run = gm_json(root, "runs", queued["run_id"])
    assert run["status"] == "cancelled" and "interrupted" in run["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("runs", "--status", "done"), "unknown run status 'done'"),
        (("runs", "--kind", "train"), "unknown run kind 'train'"),
        (("runs", "zz"), "'zz' is not a run id"),
        (("cancel", "abc"), "no run matches 'abc'"),
        (("run", "+nope", "--queue"), "nope"),
        (("run", "--queue", "--priority", "5000"), "less than or equal to 1000"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    root = make(tmp_path / "p")
    proc = gm(root, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert gm_json(root, "runs") == []  # nothing was queued


def test_the_owner_names_a_live_process() -> None:
    from gristmill.execution.coordinator import owner_alive, this_owner

    me = this_owner()
    assert owner_alive(me)
    host, pid, started = me.rsplit(":", 2)
    assert int(pid) == os.getpid() and started
    assert not owner_alive(f"{host}:{pid}:{int(started) + 1}")  # a reused pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not owner_alive(f"{host}:{child.pid}:")
    assert owner_alive(f"another-host:{child.pid}:1")  # trusted until its lease runs out


def test_sigterm_to_a_foreground_run_closes_it_as_cancelled(tmp_path: Path) -> None:
    root = make(tmp_path / "p", sleep=4)  # the step running when the signal comes finishes
    proc = spawn(root, "run")
    wait_for(root / "slow_started", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    [run] = gm_json(root, "runs")
    assert run["status"] == "cancelled" and "interrupted" in run["error"]
