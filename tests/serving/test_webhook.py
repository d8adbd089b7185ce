"""Decisions reach a webhook without delaying responses, and land in a decisions table."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn

from gristmill.serving.log import decisions_table
from gristmill.serving.spool import drained
from gristmill.workspace import Workspace
from gristmill.workspace.serve import create_app, spool_folder
from tests.conftest import built_example

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_webhook_and_decisions_table(tmp_path: Path, receiver: tuple[str, list[dict]]) -> None:
    url, received = receiver
    dead = f"http://127.0.0.1:{_port()}/nothing-listens"
    root = tmp_path / "demo"
    services = (
        f'\nhooked = gm.service("hooked", model="churn", lookups=["user_profile"], '
        f'webhook="{url}")\n'
        f'down = gm.service("down", model="churn", lookups=["user_profile"], '
        f'webhook="{dead}")\n'
    )
    ws = built_example(root, scale="tiny", seed=4, append=services)
    users = sorted(ws.read("user_profile", columns=["user_id"])["user_id"].to_pylist())[:5]
    app = create_app(ws, ["hooked", "down"], auth=False, reload_every_s=0)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/v2/health/live")
            break
        except httpx.TransportError:
            time.sleep(0.05)
    ids = []
    for user in users:
        for service in ("hooked", "down"):
            clock = time.perf_counter()
            r = httpx.post(
                f"{base}/v1/services/{service}/predict", json={"entity": {"user_id": user}}
            )
            assert r.status_code == 200
            assert time.perf_counter() - clock < 1.0  # a dead receiver never delays a response
            ids.append((service, r.json()["request_id"], r.json()["decision"]))
    deadline = time.monotonic() + 10
    while len(received) < len(users) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.should_exit = True
    thread.join(30)
    hooked = {(i, d) for s, i, d in ids if s == "hooked"}
    assert {(e["request_id"], e["decision"]) for e in received} == hooked
    assert all(e["service"] == "hooked" and len(e["reasons"]) == 3 for e in received)
    ws = Workspace.open(root)
    with drained(spool_folder(ws), ws.lake) as drainer:  # what `gristmill serve`'s drainer does
        assert drainer.drain() == 2 * len(users)
    table = decisions_table("hooked")
    decided = ws.lake.read(table, ws.lake.latest_version(table))
    assert set(decided["request_id"].to_pylist()) == {i for i, _ in hooked}
    ws.close()
