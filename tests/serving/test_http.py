"""The serving app over real HTTP: uvicorn in a subprocess, httpx on loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gristmill.serving.log import log_table
from gristmill.workspace import Workspace
from tests.conftest import CliResult, built_example

pytestmark = pytest.mark.slow


@dataclass
class Server:
    root: Path
    url: str
    proc: subprocess.Popen[bytes]
    service_key: str
    reader_key: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.service_key}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(root: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    errors = root / f"serve-{port}.err"
    command = [sys.executable, "-m", "gristmill", "serve", "churn", "-p", str(root)]
    command += ["--port", str(port), "--reload-every", "0.5", *args]
    with open(errors, "wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(errors.read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve") / "demo"
    ws = built_example(root, scale="small", seed=3)
    service_key = ws.tokens.create("service").token
    reader_key = ws.tokens.create("reader").token
    ws.close()
    proc, url = start(root)
    yield Server(root, url, proc, service_key, reader_key)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def test_predict_returns_a_decision_with_reasons(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/v1/services/churn/predict",
        json={"entity": {"user_id": "u_0000006"}},
        headers=server.headers(),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == 1 and body["entity"] == {"user_id": "u_0000006"}
    assert body["decision"] in ("retention_offer", "watch", "none")
    assert [set(x) for x in body["reasons"]] == [{"feature", "value", "contribution"}] * 3
    ws = Workspace.open(server.root)
    expected = ws.services.predict("churn", {"user_id": "u_0000006"})
    ws.close()
    assert body["score"] == expected.score


def test_a_batch_of_instances(server: Server) -> None:
    users = ["u_0000006", "u_0000011", "u_0000019"]
    r = httpx.post(
        f"{server.url}/v1/services/churn/predict",
        json={"instances": [{"entity": {"user_id": u}} for u in users]},
        headers=server.headers(),
    )
    assert r.status_code == 200
    assert [p["entity"]["user_id"] for p in r.json()["predictions"]] == users


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b'{"entity": ', "service", 400, "not valid JSON"),
        (b"[1, 2]", "service", 400, "must be a JSON object"),
        (b'{"features": {}}', "service", 422, "entity must be an object"),
        (b'{"entity": {"user_id": ["x"]}}', "service", 422, "entity.user_id must be a string"),
        (b'{"entity": {}}', "service", 422, "entity.user_id is required"),
        (b'{"entity": {"user_id": "u_1"}, "features": {"x": 1}}', "service", 422, "features.x"),
        (b'{"entity": {"user_id": "nobody"}}', "service", 404, "no online features"),
        (b'{"entity": {"user_id": "u_0000006"}}', None, 401, "missing API key"),
        (b'{"entity": {"user_id": "u_0000006"}}', "bogus", 401, "unknown or revoked"),
        (b'{"entity": {"user_id": "u_0000006"}}', "reader", 403, "role 'reader' may not"),
        (b'{"instances": []}', "service", 422, "instances must be a list"),
    ],
)
def test_bad_requests_get_a_clear_status_and_body(
    server: Server, body: bytes, headers: str | None, status: int, says: str
) -> None:
    keys = {"service": server.service_key, "reader": server.reader_key, "bogus": "gm_x_y"}
    r = httpx.post(
        f"{server.url}/v1/services/churn/predict",
        content=body,
        headers=server.headers(keys[headers]) if headers else {},
    )
    assert r.status_code == status, r.text
    assert says in r.json()["message"]
    assert r.json()["status"] == status


def test_unknown_service_oversized_body_and_wrong_method(server: Server) -> None:
    r = httpx.post(f"{server.url}/v1/services/nope/predict", json={}, headers=server.headers())
    assert r.status_code == 404 and r.json()["error"] == "UnknownServiceError"
    big = b'{"entity": {"user_id": "' + b"x" * (2 << 20) + b'"}}'
    r = httpx.post(f"{server.url}/v1/services/churn/predict", content=big, headers=server.headers())
    assert r.status_code == 413
    assert httpx.get(f"{server.url}/v1/services/churn/predict").status_code == 405
    assert httpx.get(f"{server.url}/nowhere").json()["status"] == 404


def test_open_inference_protocol_v2(server: Server) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    meta = httpx.get(f"{server.url}/v2/models/churn", headers=server.headers(server.reader_key))
    assert meta.status_code == 200 and meta.json()["versions"] == ["1"]
    assert meta.json()["inputs"][0]["name"] == "user_id"
    r = httpx.post(
        f"{server.url}/v2/models/churn/infer",
        json={
            "inputs": [
                {
                    "name": "user_id",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": ["u_0000006", "u_0000011"],
                }
            ]
        },
        headers=server.headers(),
    )
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["score"]["shape"] == [2] and outputs["decision"]["datatype"] == "BYTES"


def test_metrics_and_openapi(server: Server) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    assert 'gristmill_request_seconds_count{service="churn",status="200"}' in text
    assert 'gristmill_decisions_total{decision="' in text
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/services/{name}/predict" in doc["paths"]


def test_a_promotion_is_picked_up_without_restart_or_failed_requests(server: Server) -> None:
    ws = Workspace.open(server.root)
    assert ws.models.train("churn").ok
    seen: set[int] = set()
    statuses: set[int] = set()
    deadline = time.monotonic() + 15
    ws.models.promote("churn", 2, reason="hot swap test")
    while time.monotonic() < deadline and 2 not in seen:
        r = httpx.post(
            f"{server.url}/v1/services/churn/predict",
            json={"entity": {"user_id": "u_0000006"}},
            headers=server.headers(),
        )
        statuses.add(r.status_code)
        seen.add(r.json().get("model_version"))
    ws.close()
    assert statuses == {200}
    assert 2 in seen


@pytest.mark.parametrize(("workers", "requests"), [(1, 300), (2, 100)])
def test_graceful_shutdown_logs_every_prediction(
    server: Server, workers: int, requests: int
) -> None:
    """With two workers, two writer processes append to the same Delta tables."""
    proc, url = start(server.root, "--workers", str(workers))
    ids = []
    with httpx.Client() as client:
        for i in range(requests):
            r = client.post(
                f"{url}/v1/services/churn/predict",
                json={"entity": {"user_id": f"u_{i % 50:07d}"}},
                headers=server.headers(),
            )
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM
    assert proc.wait(60) in (0, -signal.SIGTERM)
    ws = Workspace.open(server.root)
    logged = ws.lake.read(log_table("churn"), ws.lake.latest_version(log_table("churn")))
    ws.close()
    assert set(ids) <= set(logged["request_id"].to_pylist())


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    command = [str(Path(sys.executable).with_name("st")), "run", f"{server.url}/openapi.json"]
    command += ["--checks", "not_a_server_error", "--max-examples", "40", "--seed", "7"]
    command += ["--phases", "examples,coverage,fuzzing"]
    command += ["-H", f"Authorization: Bearer {server.service_key}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout.split("Test cases:")[-1]


def test_cli_tokens_and_predictions(server: Server, cli: Callable[..., CliResult]) -> None:
    p = ("--project", str(server.root))
    unknown = cli("tokens", "revoke", "nope", *p)
    assert unknown.code == 2 and "unknown active key 'nope'" in unknown.stderr
    bad = cli("predictions", "churn", "--since", "1x", *p)
    assert bad.code == 2 and "cannot read the duration '1x'" in bad.stderr
    r = httpx.post(
        f"{server.url}/v1/services/churn/predict",
        json={"entity": {"user_id": "u_0000011"}},
        headers=server.headers(),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = cli("predictions", "churn", "--since", "1h", "--limit", "1000", "--json", *p).json()
        if r.json()["request_id"] in {row["request_id"] for row in rows}:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the prediction never reached the log")
    created = cli("tokens", "create", "--role", "reader", "--json", *p).json()
    assert cli("tokens", "revoke", created["id"], *p).code == 0
    listed = {t["id"]: t for t in cli("tokens", "list", "--json", *p).json()}
    assert listed[created["id"]]["revoked_at"] is not None and "hash" not in listed[created["id"]]
