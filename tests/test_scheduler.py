"""Schedules driven by the scheduler, end to end with real processes and real signals:
missed ticks caught up, a tick never run twice through kill -9, one leader of two."""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from gristmill.storage.catalog import schema as s
from gristmill.storage.catalog.records import utcnow
from gristmill.workspace import Workspace
from tests.conftest import (
    BASIC_MODULE,
    Receiver,
    gm,
    gm_failed_json,
    gm_json,
    spawn,
    write_project,
)

pytestmark = pytest.mark.slow

EVERY_MINUTE = """
every_minute = gm.schedule(
    "every_minute", cron="{cron}", timezone="Europe/Berlin", select="+per_user",
    catchup="{catchup}",
)
"""


def make(root: Path, catchup: str = "latest", cron: str = "0 * * * *") -> Path:
    """A project with one schedule; hourly by default, so that no new tick comes due while
    a test runs (a test that rewinds the cursor makes the ticks it needs)."""
    module = BASIC_MODULE + EVERY_MINUTE.format(catchup=catchup, cron=cron)
    return write_project(root, module=module)


def rewind(root: Path, minutes: int) -> None:
    """As if the scheduler had last looked ``minutes`` ago (it was down since)."""
    ws = Workspace.open(root)
    with ws.catalog._write() as conn:
        moved = conn.execute(
            update(s.schedule_state).values(cursor=utcnow() - timedelta(minutes=minutes))
        )
        assert moved.rowcount == 1
    ws.close()


def test_a_missed_tick_is_caught_up_once_and_shown(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    listed = gm_json(root, "schedules")
    assert [x["name"] for x in listed] == ["every_minute"]
    assert listed[0]["last_tick"] is None and len(listed[0]["next_ticks"]) == 3
    assert listed[0]["next_ticks"][0].endswith(("+01:00", "+02:00"))  # Berlin time
    first = gm_json(root, "scheduler", "--once")
    assert first["queued_by_triggers"] == [] and first["ran"] == []  # starts now
    rewind(root, 121)  # two hourly ticks missed
    tick = gm_json(root, "scheduler", "--once")
    assert len(tick["queued_by_triggers"]) == 1  # catchup latest: the newest missed tick
    assert [r["requested_by"] for r in tick["ran"]] == ["schedule:every_minute"]
    assert tick["ran"][0]["status"] == "success" and tick["ran"][0]["selection"] == "+per_user"
    shown = gm_json(root, "schedules", "every_minute")
    assert shown["last_tick"]["ran"] and shown["last_tick"]["status"] == "success"
    assert shown["last_tick"]["run_id"] == tick["ran"][0]["run_id"]
    again = gm_json(root, "scheduler", "--once")  # the same ticks are not decided again
    assert again["queued_by_triggers"] == [] and again["ran"] == []
    human = gm(root, "schedules")
    assert "every_minute" in human.stdout and "Europe/Berlin" in human.stdout
    assert f"run {tick['ran'][0]['run_id'][:8]} success" in human.stdout


def test_kill_9_of_the_scheduler_never_runs_a_tick_twice_or_loses_a_run(
    tmp_path: Path,
) -> None:
    root = make(tmp_path / "p", catchup="all", cron="* * * * *")
    assert gm(root, "scheduler", "--once").returncode == 0
    rewind(root, 6)
    rng = random.Random(7)
    for _ in range(10):
        daemon = spawn(root, "scheduler", "--interval", "0.1")
        time.sleep(rng.uniform(0.3, 2.0))
        daemon.send_signal(signal.SIGKILL)
        daemon.communicate(timeout=30)
    final = gm(root, "scheduler", "--once")
    assert final.returncode == 0, final.stderr
    ws = Workspace.open(root)
    runs = [r for r in ws.runs(1000) if r.requested_by == "schedule:every_minute"]
    ticks = ws.catalog.schedule_store.ticks("every_minute", limit=1000)
    ran = [t for t in ticks if t.run]
    assert len(ran) >= 6 and len(ticks) == len({t.at for t in ticks})
    assert sorted(r.run_id for r in runs) == sorted(t.run_id for t in ran)  # one run per tick
    assert len({r.params["tick"] for r in runs}) == len(runs)
    assert {r.status for r in runs} <= {"success", "noop", "crashed"}  # none left waiting
    assert any(r.status in ("success", "noop") for r in runs)
    ws.close()


def test_two_schedulers_elect_one_leader_and_the_standby_takes_over(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    assert gm(root, "scheduler", "--once").returncode == 0
    first = spawn(root, "scheduler", "--interval", "0.2")
    ws = Workspace.open(root)
    store = ws.catalog.schedule_store

    def leader_pid(deadline: float = 20) -> int | None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            held = store.holder("scheduler")
            if held is not None:
                return int(held[0].rsplit(":", 2)[1])
            time.sleep(0.05)
        return None

    assert leader_pid() == first.pid
    second = spawn(root, "scheduler", "--interval", "0.2")
    time.sleep(2)
    assert leader_pid() == first.pid and second.poll() is None  # the standby waits
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while leader_pid() != second.pid:
        assert time.monotonic() < deadline, "the standby did not take over"
        time.sleep(0.05)
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0 and "Traceback" not in err
    assert store.holder("scheduler") is None  # a clean stop hands the leadership back
    ws.close()


FLAKY = """
import os, signal

@gm.table
def flaky(per_user: pa.Table) -> pa.Table:
    tries = Path(__file__).parent / "tries"
    n = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(n))
    mode = (Path(__file__).parent / "mode").read_text().strip()
    if mode == "transient" and n < 3:
        raise ConnectionError(f"the feature API did not answer (try {n})")
    if mode == "invalid":
        raise ValueError("a bad row")
    if mode == "die" and n == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    return per_user

flaky_nightly = gm.schedule(
    "flaky_nightly", cron="0 * * * *", select="+flaky",
    retries=gm.retry(3, backoff="exponential", base="1s", jitter=False),
    on_failure=HOOK,
)
"""


def make_flaky(root: Path, mode: str, hook: str | None = None) -> Path:
    module = BASIC_MODULE + f"\nfrom pathlib import Path\nHOOK = {hook!r}\n" + FLAKY
    write_project(root, module=module)
    (root / "mode").write_text("ok")
    assert gm(root, "run").returncode == 0  # builds everything once
    (root / "tries").unlink()
    (root / "mode").write_text(mode)
    assert gm(root, "scheduler", "--once").returncode == 0  # the schedule starts now
    return root


def due_and_stale(root: Path) -> Path:
    """The schedule's last hourly tick is due (its cursor an hour back) and ``flaky`` is
    stale (``per_user`` changed): the next tick queues a run that runs it."""
    rewind_all(root, 61)
    sql = root / "sql" / "per_user.sql"
    sql.write_text(sql.read_text().replace("count(*) as n", "count(*) as n, 1 as v"))
    return root


def scheduled_runs(root: Path) -> list[dict]:
    runs = gm_json(root, "runs", "--limit", "50")
    return [r for r in runs if r["requested_by"] == "schedule:flaky_nightly"][::-1]


def chain(root: Path, first: str) -> list[dict]:
    """A run and its retries, in order (a new minute's tick may queue other runs meanwhile)."""
    runs = {r["retry_of"]: r for r in scheduled_runs(root) if r["retry_of"]}
    found = [gm_json(root, "runs", first)]
    while found[-1]["run_id"] in runs:
        found.append(runs[found[-1]["run_id"]])
    return found


def test_a_transient_failure_is_retried_with_backoff_and_each_attempt_recorded(
    tmp_path: Path, receiver: str
) -> None:
    root = due_and_stale(make_flaky(tmp_path / "p", "transient", hook=receiver))
    first = gm_failed_json(root, "scheduler", "--once")  # exit 1: a run failed
    assert [r["status"] for r in first["ran"]] == ["failed"]
    waiting = gm_json(root, "runs", "--status", "queued")
    assert len(waiting) == 1 and waiting[0]["attempt"] == 2
    assert waiting[0]["retry_of"] == first["ran"][0]["run_id"]
    assert waiting[0]["not_before"] is not None  # backoff: 1 s after the failure
    first_id = first["ran"][0]["run_id"]
    deadline = time.monotonic() + 60
    while len(ran := [r for r in chain(root, first_id) if r["status"] != "queued"]) < 3:
        assert time.monotonic() < deadline, ran
        gm(root, "scheduler", "--once")
        time.sleep(0.3)
    attempts = chain(root, first_id)
    assert [(r["attempt"], r["status"]) for r in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "success"),
    ]
    gaps = [
        (b["started_at"], a["finished_at"]) for a, b in zip(attempts, attempts[1:], strict=False)
    ]
    assert all(started > finished for started, finished in gaps)
    assert "transient" in attempts[0]["error"] and "try 1" in attempts[0]["error"]
    log = gm(root, "runs", attempts[0]["run_id"][:10], "--log")
    assert log.returncode == 0, log.stderr
    assert "start flaky:" in log.stdout
    assert "failed flaky" in log.stdout and "error: flaky: ConnectionError" in log.stdout
    assert "exited with 0" in log.stdout.splitlines()[-1]
    assert Receiver.bodies == []  # retried attempts and the final success post nothing


def test_invalid_input_is_never_retried_and_its_failure_is_posted(
    tmp_path: Path, receiver: str
) -> None:
    root = due_and_stale(make_flaky(tmp_path / "p", "invalid", hook=receiver))
    tick = gm_failed_json(root, "scheduler", "--once")
    assert [r["status"] for r in tick["ran"]] == ["failed"]
    assert gm_json(root, "runs", "--status", "queued") == []
    [posted] = Receiver.bodies
    assert posted["schedule"] == "flaky_nightly" and posted["status"] == "failed"
    assert posted["run_id"] == tick["ran"][0]["run_id"] and posted["attempt"] == 1
    assert "ValueError: a bad row" in posted["error"]


def test_a_run_that_dies_does_not_take_the_scheduler_down(tmp_path: Path) -> None:
    root = due_and_stale(make_flaky(tmp_path / "p", "die"))
    first = gm_json(root, "run", "--queue")  # its run process dies of SIGKILL mid-step
    tick = gm_failed_json(root, "scheduler", "--once")  # then the scheduled run goes on
    assert [(r["run_id"], r["status"]) for r in tick["ran"]] == [
        (first["run_id"], "crashed"),
        (scheduled_runs(root)[0]["run_id"], "success"),
    ]
    assert "process stopped" in tick["ran"][0]["error"]


def test_a_run_past_its_timeout_is_stopped_and_marked_timed_out(tmp_path: Path) -> None:
    from tests.test_crash import make as make_slow

    root = make_slow(tmp_path / "p", sleep=120)
    queued = gm_json(root, "run", "--queue", "--timeout", "3s")
    assert queued["timeout_s"] == 3
    clock = time.monotonic()
    tick = gm_failed_json(root, "scheduler", "--once")
    assert time.monotonic() - clock < 60
    [run] = tick["ran"]
    assert run["status"] == "timed_out" and "3s" in run["error"]
    owner_pid = int(run["owner"].rsplit(":", 2)[1])
    with pytest.raises(ProcessLookupError):
        os.kill(owner_pid, 0)  # its whole process tree is gone
    assert (root / "slow_started").exists()
    assert Workspace.open(root).catalog.latest("slow_copy") is None
    log = gm_json(root, "runs", run["run_id"], "--log")["log"]
    assert "start slow_copy:" in log and f"run process {owner_pid} exited with -9" in log
    (root / "sleep").write_text("0")
    by_hand = gm_json(root, "run")  # run here: its output was the user's, no log is kept
    missing = gm(root, "runs", by_hand["run_id"], "--log")
    assert missing.returncode == 2 and "has no log" in missing.stderr
    no_id = gm(root, "runs", "--log")
    assert no_id.returncode == 2 and "--log needs a run id" in no_id.stderr


def rewind_all(root: Path, minutes: int) -> None:
    ws = Workspace.open(root)
    with ws.catalog._write() as conn:
        conn.execute(update(s.schedule_state).values(cursor=utcnow() - timedelta(minutes=minutes)))
    ws.close()


def test_a_timeout_is_kept_when_the_scheduler_that_started_the_run_dies(tmp_path: Path) -> None:
    from tests.test_crash import make as make_slow

    root = make_slow(tmp_path / "p", sleep=120)
    queued = gm_json(root, "run", "--queue", "--timeout", "4s")
    daemon = spawn(root, "scheduler", "--interval", "0.2")
    deadline = time.monotonic() + 60
    while not (root / "slow_started").exists():
        assert time.monotonic() < deadline and daemon.poll() is None
        time.sleep(0.05)
    daemon.send_signal(signal.SIGKILL)  # its run process lives on, in its own session
    daemon.communicate(timeout=30)
    run = gm_json(root, "runs", queued["run_id"])
    worker = int(run["owner"].rsplit(":", 2)[1])
    os.kill(worker, 0)  # still running
    time.sleep(4.5)
    gm(root, "scheduler", "--once")  # another scheduler finds it past its timeout
    stopped = gm_json(root, "runs", queued["run_id"])
    assert stopped["status"] == "timed_out" and "4s" in stopped["error"]
    deadline = time.monotonic() + 10
    while True:  # the killed process group is reaped by init
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the run process still lives"
        time.sleep(0.1)


def test_schedules_are_decided_while_a_long_run_runs(tmp_path: Path) -> None:
    # docs/orchestration.md: a tick due during a long run is decided on time, not later
    from tests.test_crash import SLOW_MODULE

    root = write_project(
        tmp_path / "p", module=SLOW_MODULE + EVERY_MINUTE.format(catchup="skip", cron="0 * * * *")
    )
    (root / "sleep").write_text("0")
    assert gm(root, "run").returncode == 0  # everything built once
    assert gm(root, "scheduler", "--once").returncode == 0  # the schedule starts now
    (root / "slow_started").unlink()
    (root / "sleep").write_text("20")
    gm_json(root, "run", "slow_copy", "--queue", "--full-refresh")
    daemon = spawn(root, "scheduler", "--interval", "0.2")
    try:
        deadline = time.monotonic() + 60
        while not (root / "slow_started").exists():
            assert time.monotonic() < deadline and daemon.poll() is None
            time.sleep(0.05)
        rewind(root, 61)  # the last hourly tick falls due while slow_copy sleeps
        ws = Workspace.open(root)
        deadline = time.monotonic() + 10
        while not (ticks := ws.catalog.schedule_store.ticks("every_minute")):
            assert time.monotonic() < deadline, "no tick decided during the run"
            time.sleep(0.1)
        assert ws.runs(1, status="running")  # decided while the run still runs
        assert ticks[0].at == utcnow().replace(minute=0, second=0, microsecond=0)
        ws.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=120)
    assert daemon.returncode == 0
