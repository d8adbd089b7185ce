"""Sensors: a file source's new files and a table's new version queue runs through the
scheduler, once per change, with their cursor and reason stored; bad ones fail at load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gristmill.definitions.loader import load_project
from gristmill.errors import DefinitionError, GraphError
from gristmill.workspace import Workspace
from tests.conftest import BASIC_MODULE, gm, gm_json, write_project

pytestmark = pytest.mark.slow

SENSORS = """
new_txns = gm.sensor("new_txns", on=gm.new_files("txns"), select="txns+", min_interval="0s")
profile_changed = gm.sensor(
    "profile_changed", on=gm.new_version("per_user"), select="top_users", min_interval="0s"
)
"""


def sensor(root: Path, name: str) -> dict:
    return next(s for s in gm_json(root, "sensors") if s["name"] == name)


def test_new_files_queue_one_run_that_ingests_them(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", module=BASIC_MODULE + SENSORS)
    assert gm(root, "run").returncode == 0
    quiet = gm_json(root, "scheduler", "--once")
    assert quiet["queued_by_triggers"] == [] and quiet["ran"] == []
    state = sensor(root, "new_txns")
    assert state["fired"] is False and state["reason"] == "txns: no new files (v0)"
    assert sensor(root, "profile_changed")["reason"] == "started watching per_user (at v0)"

    (root / "data" / "b.csv").write_text("id,user_id,amount\n10,u9,4\n11,u9,6\n")
    tick = gm_json(root, "scheduler", "--once")
    fired = [t for t in tick["queued_by_triggers"] if t.get("sensor") == "new_txns"]
    assert len(fired) == 1 and "1 new file(s) (data/b.csv)" in fired[0]["reason"]
    by_sensor = [r for r in tick["ran"] if r["requested_by"] == "sensor:new_txns"]
    assert len(by_sensor) == 1 and by_sensor[0]["status"] == "success"
    assert by_sensor[0]["run_id"] == fired[0]["run_id"]
    ws = Workspace.open(root)
    assert "u9" in ws.read("per_user")["user_id"].to_pylist()
    assert ws.catalog.latest("txns").version == 1
    ws.close()
    state = sensor(root, "new_txns")  # evaluated again after its run: nothing new since
    assert state["fired"] is False and state["reason"] == "txns: no new files (v1)"
    assert state["last_run"]["status"] == "success"
    assert state["last_run"]["run_id"] == fired[0]["run_id"]
    # per_user got v1 from that run: the upstream sensor fires once for it, then rests
    assert [r["requested_by"] for r in tick["ran"]].count("sensor:profile_changed") == 1
    assert sensor(root, "profile_changed")["cursor"] == "1"
    again = gm_json(root, "scheduler", "--once")
    assert again["queued_by_triggers"] == [] and again["ran"] == []
    human = gm(root, "sensors")
    assert "new_txns" in human.stdout and "new_files(txns)" in human.stdout


def test_files_already_queued_do_not_queue_twice(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", module=BASIC_MODULE + SENSORS)
    assert gm(root, "run").returncode == 0
    (root / "data" / "c.csv").write_text("id,user_id,amount\n20,u8,1\n")
    ws = Workspace.open(root)
    first = ws.scheduler.tick()
    second = ws.scheduler.tick()  # the run is still queued: nobody worked the queue
    assert [f["sensor"] for f in first.fired] == ["new_txns"]
    assert second.fired == []
    states = ws.catalog.schedule_store.sensor_states()
    assert states["new_txns"].reason.endswith("already queued")
    assert len(ws.runs(status="queued")) == 1
    # its run dies before ingesting anything: the same files queue it again
    store = ws.catalog.run_store
    claimed = store.claim("elsewhere:1:1", timedelta(seconds=60), lambda owner: True)
    assert claimed is not None and claimed[0].run_id == first.fired[0]["run_id"]
    assert store.close_abandoned(lambda owner: False) == 1
    again = ws.scheduler.tick()
    assert [f["sensor"] for f in again.fired] == ["new_txns"]
    assert "its last run crashed: again" in again.fired[0]["reason"]
    store.cancel(again.fired[0]["run_id"])
    (root / "data" / "d.csv").write_text("id,user_id,amount\n21,u7,1\n")
    third = ws.scheduler.tick()  # another file: the pending set changed
    assert [f["sensor"] for f in third.fired] == ["new_txns"]
    ws.close()


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        ('gm.sensor("s", on=gm.new_files("nope"))', GraphError, "watches 'nope'"),
        ('gm.sensor("s", on=gm.new_files("per_user"))', GraphError, "needs a file source"),
        ('gm.sensor("s", on=gm.new_version("txns"), select="+nope")', GraphError, "nope"),
        ('gm.sensor("s", on="txns")', DefinitionError, "on= must be gm.new_files"),
        ('gm.sensor("s", on=gm.monitor_alert("nope"))', GraphError, "not a monitor"),
        ('gm.sensor("s", on=gm.new_files("txns"), min_interval="soon")', DefinitionError, "soon"),
    ],
)
def test_a_bad_sensor_is_a_load_error_with_its_line(
    tmp_path: Path, line: str, error: type[Exception], message: str
) -> None:
    root = write_project(tmp_path / "p", module=BASIC_MODULE + "\nbad = " + line + "\n")
    with pytest.raises(error) as caught:
        load_project(root)
    assert message in str(caught.value)
    location = caught.value.location
    assert location is not None
    assert (root / "pipeline.py").read_text().splitlines()[location.line - 1].startswith("bad = ")


ALERTS = """
q = gm.quality_monitor("q", table="txns", max_quarantine_share=0.0)
on_q = gm.sensor("on_q", on=gm.monitor_alert("q"), select="top_users", min_interval="0s")
"""


def test_a_monitor_alert_queues_the_sensors_run_once(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", module=BASIC_MODULE + ALERTS)
    first = gm_json(root, "run")
    [q] = first["summary"]["monitors"]
    assert q["state"] == "alert"  # the example rows carry rejects
    quiet = gm_json(root, "scheduler", "--once")  # an alert from before it watched: no run
    assert quiet["ran"] == [] and sensor(root, "on_q")["reason"] == "started watching q's alerts"
    (root / "data" / "b.csv").write_text("id,user_id,amount\n30,u5,-4\n31,u5,2\n")
    assert gm_json(root, "run")["summary"]["monitors"][0]["state"] == "alert"
    tick = gm_json(root, "scheduler", "--once")
    [fired] = tick["queued_by_triggers"]
    assert fired["sensor"] == "on_q" and fired["reason"].startswith("q alerted: q: ")
    [ran] = tick["ran"]
    assert ran["requested_by"] == "sensor:on_q" and ran["selection"] == "top_users"
    assert ran["status"] in ("success", "noop")
    again = gm_json(root, "scheduler", "--once")
    assert again["ran"] == [] and sensor(root, "on_q")["reason"] == "no new alert of q"


def test_a_running_scheduler_loads_changed_definitions(tmp_path: Path) -> None:
    import signal
    import time

    from tests.conftest import spawn

    root = write_project(tmp_path / "p", module=BASIC_MODULE)
    assert gm(root, "run").returncode == 0
    daemon = spawn(root, "scheduler", "--interval", "0.2")
    try:
        time.sleep(2)
        pipeline = root / "pipeline.py"
        pipeline.write_text(pipeline.read_text() + "\nbroken(\n")  # a mistake while editing
        time.sleep(1.5)
        pipeline.write_text(pipeline.read_text().replace("\nbroken(\n", "\n") + SENSORS)
        (root / "data" / "e.csv").write_text("id,user_id,amount\n30,u6,2\n")
        deadline = time.monotonic() + 60
        while not any(r["requested_by"] == "sensor:new_txns" for r in gm_json(root, "runs")):
            assert time.monotonic() < deadline and daemon.poll() is None, "no sensor run"
            time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, err
    assert "does not load any more, keeping its last definitions" in err
    assert "definitions changed: loaded them again" in err
