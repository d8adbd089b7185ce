"""The scheduler's Prometheus metrics: values read from the catalog at each scrape, served
by a real daemon over loopback behind the same key check as the serving app."""

from __future__ import annotations

import signal
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from gristmill.storage.catalog import schema as s
from gristmill.storage.catalog.records import utcnow
from gristmill.workspace import Workspace
from tests.conftest import BASIC_MODULE, gm, gm_json, spawn, write_project

pytestmark = pytest.mark.slow

MODULE = (
    BASIC_MODULE
    + """
hourly = gm.schedule("hourly", cron="0 * * * *", select="+per_user")
fresh = gm.freshness("per_user", max_age="1h")
"""
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_say_the_queue_the_lag_the_last_success_and_staleness(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", module=MODULE)
    assert gm(root, "run").returncode == 0
    gm_json(root, "scheduler", "--once")  # the schedule's clock starts now
    gm_json(root, "run", "--queue")
    gm_json(root, "run", "per_user", "--queue")
    ws = Workspace.open(root)
    with ws.catalog._write() as conn:
        conn.execute(update(s.schedule_state).values(cursor=utcnow() - timedelta(minutes=30)))
        conn.execute(
            update(s.materializations)
            .where(s.materializations.c.table_name == "per_user")
            .values(finished_at=utcnow() - timedelta(hours=3))
        )
    got = samples(ws.scheduler.metrics().decode())
    ws.close()
    assert got[("gristmill_queue_depth", ())] == 2
    assert got[("gristmill_runs_running", ())] == 0
    assert 0 <= got[("gristmill_queue_oldest_seconds", ())] < 60
    assert 1790 < got[("gristmill_schedule_lag_seconds", (("schedule", "hourly"),))] < 1900
    assert got[("gristmill_freshness_stale", (("check", "per_user_freshness"),))] == 1
    age = got[("gristmill_freshness_age_seconds", (("check", "per_user_freshness"),))]
    assert 3 * 3600 - 5 < age < 3 * 3600 + 60
    assert (
        "gristmill_schedule_last_success_timestamp_seconds",
        (("schedule", "hourly"),),
    ) not in got


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, key: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_daemon_serves_metrics_to_reader_keys_only(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", module=MODULE)
    assert gm(root, "run").returncode == 0
    reader = gm_json(root, "tokens", "create", "--role", "viewer")["token"]
    service = gm_json(root, "tokens", "create", "--role", "service")["token"]
    port = free_port()
    daemon = spawn(root, "scheduler", "--metrics", f"127.0.0.1:{port}", "--interval", "0.3")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = get(base + "/health")
                break
            except OSError:
                assert time.monotonic() < deadline and daemon.poll() is None
                time.sleep(0.1)
        assert status == 200
        assert get(base + "/metrics")[0] == 401
        forbidden = get(base + "/metrics", service)
        assert forbidden[0] == 403 and "(role service) may not read metrics" in forbidden[1]
        assert get(base + "/metrics", "gm_not_a_key")[0] == 401
        status, text = get(base + "/metrics", reader)
        assert status == 200
        got = samples(text)
        assert got[("gristmill_scheduler_leader", ())] == 1
        assert got[("gristmill_freshness_stale", (("check", "per_user_freshness"),))] == 0
        gm_json(root, "run", "--queue")
        deadline = time.monotonic() + 60
        while (
            "gristmill_scheduler_runs_total",
            (("kind", "build"), ("status", "noop")),
        ) not in got:
            assert time.monotonic() < deadline
            time.sleep(0.3)
            got = samples(get(base + "/metrics", reader)[1])
        assert get(base + "/nope", reader)[0] == 404
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    public_port = free_port()
    public = spawn(root, "scheduler", "--metrics", f"127.0.0.1:{public_port}", "--metrics-public")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, text = get(f"http://127.0.0.1:{public_port}/metrics")  # no key
                break
            except OSError:
                assert time.monotonic() < deadline and public.poll() is None
                time.sleep(0.1)
        assert status == 200 and "gristmill_queue_depth" in text
    finally:
        public.send_signal(signal.SIGTERM)
        public.communicate(timeout=30)
    lone = gm(root, "scheduler", "--once", "--metrics-public")
    assert lone.returncode == 2 and "--metrics-public needs --metrics" in lone.stderr
    with socket.socket() as busy:  # a port another process listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        clash = gm(root, "scheduler", "--once", "--metrics", f"127.0.0.1:{taken}")
    assert clash.returncode == 2 and f"cannot serve metrics on 127.0.0.1:{taken}" in clash.stderr
    assert "Traceback" not in clash.stderr
    bad = gm(root, "scheduler", "--once", "--metrics", "nine")
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stderr
