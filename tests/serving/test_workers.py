"""Several workers: one set of metrics, no idle process, and a promotion reaching all of them."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from gristmill.workspace import Workspace
from tests.serving.conftest import Built, logged_ids, start
from tests.serving.test_signals import children

pytestmark = pytest.mark.slow

COUNT = re.compile(
    r'gristmill_request_seconds_count\{route="/v1/services/\{name\}/predict",'
    r'service="churn",status="200"\} (\S+)'
)


def test_metrics_count_the_requests_of_every_worker(project: Built) -> None:
    server = start(project, "--workers", "2")
    try:
        for i in range(400):  # a new connection each: the kernel spreads them over workers
            r = httpx.post(
                f"{server.url}/v1/services/churn/predict",
                json={"entity": {"user_id": f"u_{i % 50:07d}"}},
                headers=server.headers(),
            )
            assert r.status_code == 200
        for _ in range(10):  # whichever worker answers the scrape
            text = httpx.get(f"{server.url}/metrics", headers=server.headers("viewer")).text
            (count,) = COUNT.findall(text)
            assert float(count) == 400
            decisions = re.findall(r'gristmill_decisions_total\{[^}]*service="churn"\} (\S+)', text)
            assert sum(float(d) for d in decisions) == 400
    finally:
        server.stop()


def test_the_supervisor_runs_the_workers_and_the_drainer_and_nothing_else(project: Built) -> None:
    server = start(project, "--workers", "2")
    try:
        kinds = sorted(_kind(command) for _, command in children(server.proc.pid))
        # uvicorn starts workers with multiprocessing's spawn, which keeps Python's own
        # resource tracker beside them
        assert kinds == ["drainer", "resource tracker", "worker", "worker"]
        spool = project.root / ".gristmill" / "spool"
        fds = Path(f"/proc/{server.proc.pid}/fd")
        held = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()]
        assert not [f for f in held if f.endswith(".jsonl")]  # the supervisor answers nothing
        with httpx.Client() as client:
            ids = [server.predict(client, "u_0000006").json()["request_id"] for _ in range(20)]
        deadline = time.monotonic() + 10
        while not set(ids) <= set(logged_ids(project.root)):
            assert time.monotonic() < deadline, "the drainer did not write the log"
            time.sleep(0.2)
        assert len(list(spool.glob("*.jsonl"))) == 2  # one spool per worker
    finally:
        server.stop()


def _kind(command: str) -> str:
    if "gristmill.serving.drainer" in command:
        return "drainer"
    if "resource_tracker" in command:
        return "resource tracker"
    assert "multiprocessing.spawn" in command, command
    return "worker"


def test_every_worker_switches_within_a_second_of_a_promotion(project: Built) -> None:
    ws = Workspace.open(project.root)
    assert ws.models.train("churn").ok  # version 2, not yet champion
    server = start(project, "--workers", "2")
    answers: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():  # a new connection each, so both workers answer
            r = httpx.post(
                f"{server.url}/v1/services/churn/predict",
                json={"entity": {"user_id": "u_0000006"}},
                headers=server.headers(),
            )
            answers.append((time.monotonic(), r.json()["model_version"]))

    threads = [threading.Thread(target=load) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(1)
        ws.models.promote("churn", 2, reason="switch test")
        promoted = time.monotonic()
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        ws.close()
        server.stop()
    late_old = [at - promoted for at, version in answers if version == 1 and at > promoted + 1.0]
    assert not late_old, f"{len(late_old)} answers from version 1 more than 1 s after"
    assert {v for at, v in answers if at > promoted + 1.0} == {2}
