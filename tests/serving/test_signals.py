"""Stopping and killing a loaded server with real signals loses no answered prediction.

Each case runs 5 times: a server under load from 3 client threads gets the signal after
it answered some requests; every answer a client received must be in the prediction log
once the server's processes are gone (or, after a SIGKILL of all of them, once the next
server started and stopped), and no row may be there twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import Built, Server, logged_ids, start

pytestmark = pytest.mark.slow

LOOPS = 3
"""Each scenario, start to kill, this many times a run (the test budget: 3 x 11 scenarios)."""


class Load:
    """Clients predicting until told to stop or the server goes away."""

    def __init__(self, server: Server, threads: int = 3) -> None:
        self.server = server
        self.answered: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, seed: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = seed
            while not self._stop.is_set():
                i += 7
                try:
                    r = self.server.predict(client, f"u_{i % 50:07d}")
                except httpx.TransportError:
                    time.sleep(0.01)
                    continue
                if r.status_code == 200:
                    with self._lock:
                        self.answered.append(r.json()["request_id"])

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < n:
            assert time.monotonic() < deadline, f"only {len(self.answered)} answers"
            time.sleep(0.01)

    def stop(self) -> list[str]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return list(self.answered)


def assert_logged(root: Path, answered: list[str]) -> None:
    logged = logged_ids(root)
    assert len(logged) == len(set(logged)), "a prediction was logged twice"
    missing = set(answered) - set(logged)
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions not logged"


def children(pid: int) -> list[tuple[int, str]]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = []
    for child in map(int, out.split()):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
        found.append((child, command))
    return found


def drainer_pid(server: Server, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p, c in children(server.proc.pid) if "gristmill.serving.drainer" in c]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "no drainer process"
        time.sleep(0.05)


def worker_pids(server: Server) -> list[int]:
    return [p for p, c in children(server.proc.pid) if "gristmill.serving.drainer" not in c]


# every pair of values of the three settings once (4 cases, not all 8: the test budget)
@pytest.mark.parametrize(
    ("workers", "sig", "group"),
    [
        (1, signal.SIGTERM, False),
        (1, signal.SIGINT, True),
        (2, signal.SIGTERM, True),
        (2, signal.SIGINT, False),
    ],
    ids=["1-15-pid", "1-2-group", "2-15-group", "2-2-pid"],
)
def test_a_graceful_stop_logs_every_answer(
    project: Built, workers: int, sig: int, group: bool
) -> None:
    for _ in range(LOOPS):
        server = start(project, "--workers", str(workers))
        load = Load(server)
        load.wait_for(150)
        server.stop(sig, group=group)
        answered = load.stop()
        server.wait_group_gone()
        assert_logged(project.root, answered)
        assert "Traceback" not in server.stderr(), server.stderr()
        assert not list((project.root / ".gristmill" / "spool").glob("*.jsonl"))


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_the_server_loses_nothing(project: Built, workers: int) -> None:
    """With one worker the drainer finishes alone; with two, the workers notice their
    supervisor died, finish gracefully, and the drainer then makes its last pass."""
    for _ in range(LOOPS):
        server = start(project, "--workers", str(workers))
        load = Load(server)
        load.wait_for(150)
        server.stop(signal.SIGKILL)
        server.wait_group_gone()
        assert_logged(project.root, load.stop())


def test_sigkill_of_a_worker_loses_nothing(project: Built) -> None:
    for _ in range(LOOPS):
        server = start(project, "--workers", "2")
        load = Load(server)
        load.wait_for(150)
        os.kill(worker_pids(server)[0], signal.SIGKILL)
        load.wait_for(len(load.answered) + 150)  # the other worker (and a new one) answer
        server.stop(signal.SIGTERM)
        answered = load.stop()
        server.wait_group_gone()
        assert_logged(project.root, answered)


def test_sigkill_of_the_drainer_loses_and_repeats_nothing(project: Built) -> None:
    for _ in range(LOOPS):
        server = start(project)
        load = Load(server)
        load.wait_for(150)
        first = drainer_pid(server)
        os.kill(first, signal.SIGKILL)
        load.wait_for(len(load.answered) + 300)
        deadline = time.monotonic() + 10
        while drainer_pid(server) == first:  # restarted by the server's watchdog
            assert time.monotonic() < deadline, "the drainer was not restarted"
            time.sleep(0.05)
        server.stop(signal.SIGTERM)
        answered = load.stop()
        server.wait_group_gone()
        assert_logged(project.root, answered)


def test_sigkill_of_every_process_is_drained_at_the_next_start(project: Built) -> None:
    for _ in range(LOOPS):
        server = start(project, "--workers", "2")
        load = Load(server)
        load.wait_for(150)
        server.stop(signal.SIGKILL, group=True)
        answered = load.stop()
        server.wait_group_gone()
        again = start(project)
        again.stop(signal.SIGTERM)
        again.wait_group_gone()
        assert_logged(project.root, answered)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_ctrl_c_forces_the_stop_and_still_loses_nothing(
    project: Built, workers: int
) -> None:
    for _ in range(3):
        server = start(project, "--workers", str(workers))
        load = Load(server)
        load.wait_for(150)
        os.killpg(server.proc.pid, signal.SIGINT)
        time.sleep(0.05)
        os.killpg(server.proc.pid, signal.SIGINT)  # impatient: uvicorn's forced exit
        server.proc.wait(90)
        answered = load.stop()
        server.wait_group_gone()
        assert_logged(project.root, answered)
        assert "Traceback" not in server.stderr(), server.stderr()
