"""HTTP intake: `POST /v1/intake/{source}` on a real `gristmill serve` over loopback."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gristmill.workspace import Workspace

JSON = {"Content-Type": "application/json"}


def project(root: Path, **settings: str) -> Path:
    args = {
        "columns": '{"id": "BIGINT", "user": "VARCHAR", "amount": "DOUBLE", "_request": "VARCHAR"}',
        "checks": '[gm.not_null("id")]',
        **settings,
    }
    body = ",\n    ".join(f"{k}={v}" for k, v in args.items())
    root.mkdir(parents=True, exist_ok=True)
    (root / "gristmill.toml").write_text('name = "intake"\n')
    (root / "pipeline.py").write_text(
        "import gristmill as gm\n\n"
        + textwrap.dedent(f'events = gm.intake_source(\n    "events",\n    {body},\n)\n')
    )
    ws = Workspace.open(root)
    for role in ("ingest", "viewer"):
        (root / f"{role}.key").write_text(ws.tokens.create(role).token)
    ws.close()
    return root


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gristmill", "serve", "-p", str(self.root),
             "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("the server did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def post(self, body: bytes | str, *, key: str | None = None, role: str = "ingest",
             headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        sent = {**JSON, "Authorization": f"Bearer {(self.root / f'{role}.key').read_text()}"}
        if key is not None:
            sent["Idempotency-Key"] = key
        sent.update(headers or {})
        return httpx.post(f"{self.url}/v1/intake/events", content=body, headers=sent, timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    server = Server(project(tmp_path / "p")).start()
    yield server
    server.kill()


def landed(root: Path) -> list[int]:
    ids = Workspace.open(root).read("events")["id"].to_pylist()
    assert len(ids) == len(set(ids)), "a row landed twice"
    return sorted(ids)


def test_posted_rows_land_once_retries_are_recognized_bad_input_is_refused(
    served: Server,
) -> None:
    first = served.post('[{"id": 1, "user": "a", "amount": 2.5}, {"id": "x"}]', key="k1")
    assert first.status_code == 202, first.text
    assert first.json() == {"source": "events", "request": 1, "rows": 2, "duplicate": False}
    again = served.post('[{"id": 1, "user": "a", "amount": 2.5}, {"id": "x"}]', key="k1")
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert again.json()["request"] == 1
    reused = served.post('[{"id": 9}]', key="k1")
    assert reused.status_code == 409 and "different body" in reused.json()["message"]
    lines = served.post(
        '{"id": 2, "user": "b"}\n\n{"id": 3, "amount": 1}\n',
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert lines.status_code == 202 and lines.json()["rows"] == 2

    for body, status, message in [
        ('[{"id": 4}, 5]', 400, "item 2 is not a JSON object"),
        ('{"id": 4}\n[1]', 400, "line 2 is not a JSON object"),
        ('[{"id": 4}', 400, "not valid JSON"),
        ("", 400, "the body is empty"),
    ]:
        answer = served.post(body)
        assert answer.status_code == status and message in answer.json()["message"], answer.text
    assert served.post('[{"id": 4}]', key="bad key").status_code == 400
    assert served.post('[{"id": 4}]', role="viewer").status_code == 403
    anonymous = httpx.post(f"{served.url}/v1/intake/events", content="[]", headers=JSON)
    assert anonymous.status_code == 401
    other = served.post('[{"id": 4}]', headers={"Content-Type": "text/csv"})
    assert other.status_code == 415
    unknown = httpx.post(
        f"{served.url}/v1/intake/nope",
        content='[{"id": 4}]',
        headers={**JSON, "Authorization": f"Bearer {(served.root / 'ingest.key').read_text()}"},
    )
    assert unknown.status_code == 404 and "intake sources: events" in unknown.json()["hint"]

    outcome = Workspace.open(served.root).ingest(["events"])
    assert outcome.ok, outcome.result.error()
    step = outcome.result.steps[0]
    assert (step.rows_added, step.quarantined) == (3, 1)
    assert landed(served.root) == [1, 2, 3]
    requests = Workspace.open(served.root).read("events")["_request"].to_pylist()
    assert sorted(requests) == ["2", "2", "k1"]
    quarantine = Workspace.open(served.root).quarantine("events")
    assert quarantine["_file"].to_pylist() == ["request k1, row 2"]
    assert Workspace.open(served.root).ingest(["events"]).result.status == "noop"


def test_the_openapi_document_describes_intake_and_schemathesis_finds_nothing(
    served: Server, tmp_path: Path
) -> None:
    """The route is in the published document, and every check of schemathesis over it
    passes. JSON lines cannot be described by JSON Schema (any string is a valid-looking
    body), so 400 is expected for valid-looking ones; and 409 for a body sent with a key
    another body was sent with (what an idempotency key is for)."""
    from openapi_spec_validator import validate

    headers = {"Authorization": f"Bearer {(served.root / 'ingest.key').read_text()}"}
    doc = httpx.get(f"{served.url}/openapi.json", headers=headers).json()
    validate(doc)
    post = doc["paths"]["/v1/intake/events"]["post"]
    assert set(post["responses"]) >= {"202", "400", "401", "403", "409", "415", "429"}
    assert "id, user, amount, _request" in str(post["requestBody"])
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[[operations]]\ninclude-path-regex = "/intake/"\n'
        "[operations.checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "400", "401", "403", "409"]\n'
    )
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run"]
    command += [f"{served.url}/openapi.json", "--checks", "all", "--max-examples", "30"]
    command += ["--seed", "7", "--phases", "examples,coverage,fuzzing", "--max-failures", "10"]
    command += ["-H", f"Authorization: {headers['Authorization']}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:]
    summary = done.stdout.split("Test cases:")[-1]
    assert " passed" in done.stdout and "failed" not in summary, done.stdout[-3000:]


def test_a_full_buffer_answers_429_with_retry_after_until_it_is_landed(tmp_path: Path) -> None:
    server = Server(project(tmp_path / "p", max_buffer_rows="5")).start()
    try:
        assert server.post('[{"id": 1}, {"id": 2}, {"id": 3}]').status_code == 202
        assert server.post('[{"id": 4}, {"id": 5}]').status_code == 202
        full = server.post('[{"id": 6}]', key="six")
        assert full.status_code == 429 and full.headers["retry-after"] == "5"
        assert "holds 5 rows not landed yet; 1 more" in full.json()["message"]
        over = server.post('[{"id": 7}, {"id": 8}]')
        assert over.status_code == 429
        assert Workspace.open(server.root).ingest(["events"]).ok
        assert server.post('[{"id": 6}]', key="six").status_code == 202
    finally:
        server.kill()
    assert Workspace.open(server.root).ingest(["events"]).ok
    assert landed(server.root) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("point", ["after_extract", "before_ack", "after_commit"])
def test_ingest_killed_at_each_point_lands_every_row_once(served: Server, point: str) -> None:
    for i in range(10):
        assert served.post(f'[{{"id": {2 * i}}}, {{"id": {2 * i + 1}}}]').status_code == 202
    killed = subprocess.run(
        [sys.executable, "-m", "gristmill", "ingest", "events", "-p", str(served.root)],
        capture_output=True,
        env={**os.environ, "GRISTMILL_FAILPOINTS": f"{point}:events"},
    )
    assert killed.returncode == -signal.SIGKILL
    assert served.post('[{"id": 100}]').status_code == 202
    assert Workspace.open(served.root).ingest(["events"]).ok
    assert landed(served.root) == [*range(20), 100]


def test_server_and_ingest_killed_at_random_lose_and_double_nothing(tmp_path: Path) -> None:
    """A client posts 300 requests, retrying each with its key until it gets 202, while
    the server and `ingest --follow` are killed and started again: every acknowledged
    row lands, once."""
    server = Server(project(tmp_path / "p", batch_rows="200")).start()
    total = 300
    acknowledged: list[int] = []
    done = threading.Event()

    def client() -> None:
        for n in range(total):
            body = f'[{{"id": {2 * n}}}, {{"id": {2 * n + 1}}}]'
            while True:
                try:
                    if server.post(body, key=f"req-{n}").status_code == 202:
                        acknowledged.append(n)
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        done.set()

    thread = threading.Thread(target=client)
    thread.start()
    rng = random.Random(3)
    follower = None
    try:
        for round_ in range(3):
            follower = subprocess.Popen(
                [sys.executable, "-m", "gristmill", "ingest", "events", "--follow",
                 "--interval", "0.1", "-p", str(server.root)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(rng.uniform(1.0, 2.5))
            follower.send_signal(signal.SIGKILL)
            follower.wait()
            if round_ < 2:
                server.kill()
                server.start()
        assert done.wait(timeout=180), "the client did not finish"
    finally:
        thread.join(timeout=5)
        server.kill()
    assert len(acknowledged) == total
    for _ in range(20):
        if Workspace.open(server.root).ingest(["events"]).result.status == "noop":
            break
    assert landed(server.root) == list(range(2 * total))


def test_erase_reaches_rows_still_waiting_in_the_intake_buffer(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        columns='{"id": "BIGINT", "user": "VARCHAR", "email": "VARCHAR"}',
        pii='{"email": "email"}',
    )
    (root / "gristmill.toml").write_text('name = "intake"\n[pii]\nkey_file = "pii.key"\n')
    (root / "pii.key").write_text("k" * 40)
    server = Server(root).start()
    try:
        first = server.post('[{"id": 1, "user": "a", "email": "Ann@Example.com"}]')
        assert first.status_code == 202
        assert Workspace.open(root).ingest(["events"]).ok  # landed: its body is cleared
        posted = '[{"id": 2, "user": "b", "email": "ann@example.com "}, {"id": 3, "user": "c"}]'
        assert server.post(posted, key="two").status_code == 202  # still waiting
    finally:
        server.kill()
    done = json.loads(
        subprocess.run(
            [sys.executable, "-m", "gristmill", "erase", "--subject", "email=ann@example.com",
             "--yes", "--json", "-p", str(root)],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert done["verified"] is True
    assert Workspace.open(root).ingest(["events"]).ok
    assert landed(root) == [3]  # 1 erased from the table, 2 from the buffer
    for path in (root / ".gristmill" / "intake").iterdir():
        assert b"ann@example" not in path.read_bytes().lower(), path
