"""Real servers for the serving tests: the small churn example, uvicorn in a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gristmill.serving.log import log_table
from gristmill.storage.lake import Lake
from gristmill.workspace import Workspace
from tests.conftest import built_example


@dataclass(frozen=True)
class Built:
    root: Path
    keys: dict[str, str]


@dataclass
class Server:
    root: Path
    url: str
    proc: subprocess.Popen[bytes]
    keys: dict[str, str]
    errors: Path
    args: tuple[str, ...] = field(default=())

    def headers(self, role: str | None = "service") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"} if role else {}

    def predict(self, client: httpx.Client, user: str, role: str = "service") -> httpx.Response:
        return client.post(
            f"{self.url}/v1/services/churn/predict",
            json={"entity": {"user_id": user}},
            headers=self.headers(role),
        )

    def stderr(self) -> str:
        return self.errors.read_text()

    def stop(self, sig: int = signal.SIGTERM, *, group: bool = False, timeout: float = 90) -> int:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait_group_gone(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while self.group_alive():
            assert time.monotonic() < deadline, "the server's processes did not all exit"
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


STARTED: list[Server] = []


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test() -> Iterator[None]:
    """A failing test still takes its servers down (the shared one is not in the list)."""
    yield
    while STARTED:
        server = STARTED.pop()
        if server.group_alive():
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


def start(built: Built | Path, *args: str, root: Path | None = None) -> Server:
    """``gristmill serve churn`` on a free port, in its own process group; ready when it
    answers ``/v2/health/ready``."""
    source = built.root if isinstance(built, Built) else built
    keys = built.keys if isinstance(built, Built) else {}
    root = root or source
    port = free_port()
    errors = root / f"serve-{port}.err"
    command = [sys.executable, "-m", "gristmill", "serve", "churn", "-p", str(root)]
    command += ["--port", str(port), *args]
    with open(errors, "wb") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    server = Server(root, f"http://127.0.0.1:{port}", proc, keys, errors, args)
    STARTED.append(server)
    for _ in range(600):
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise AssertionError(errors.read_text())


def logged_ids(root: Path, service: str = "churn") -> list[str]:
    lake = Lake(root / "lake")
    version = lake.latest_version(log_table(service))
    if version is None:
        return []
    return lake.read(log_table(service), version)["request_id"].to_pylist()


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The small example, built and promoted, with a key of each role; never served."""
    root = tmp_path_factory.mktemp("serving") / "demo"
    ws = built_example(root, scale="small", seed=3)
    keys = {role: ws.tokens.create(role).token for role in ("service", "viewer", "admin")}
    ws.close()
    return Built(root, keys)


def copy_of(pristine: Built, target: Path) -> Built:
    shutil.copytree(pristine.root, target)
    return Built(target, pristine.keys)


@pytest.fixture
def project(pristine: Built, tmp_path: Path) -> Built:
    """A copy of the built example for a test that starts (and stops) its own servers."""
    return copy_of(pristine, tmp_path / "demo")


@pytest.fixture(scope="session")
def server(pristine: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests that only send requests."""
    built = copy_of(pristine, tmp_path_factory.mktemp("shared") / "demo")
    server = start(built)
    STARTED.remove(server)
    yield server
    server.stop()


def open_workspace(root: Path) -> Workspace:
    return Workspace.open(root)
