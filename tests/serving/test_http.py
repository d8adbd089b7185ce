"""The serving app over real HTTP: uvicorn in a subprocess, httpx and raw sockets on loopback."""

from __future__ import annotations

import json
import random
import socket
import statistics
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gristmill.workspace import Workspace
from tests.conftest import CliResult
from tests.serving.conftest import Built, Server, logged_ids, start

pytestmark = pytest.mark.slow

PREDICT = "/v1/services/churn/predict"
USERS = ["u_0000006", "u_0000011", "u_0000019"]


def test_predict_returns_a_decision_with_reasons(server: Server) -> None:
    r = httpx.post(
        f"{server.url}{PREDICT}",
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


def test_a_batch_answers_every_instance_and_names_the_ones_that_failed(server: Server) -> None:
    instances = [{"entity": {"user_id": USERS[i % 3]}} for i in range(1000)]
    instances[417] = {"entity": {"user_id": "nobody"}}
    r = httpx.post(
        f"{server.url}{PREDICT}", json={"instances": instances}, headers=server.headers()
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 1000 and body["predictions"][417] is None
    assert body["predictions"][418]["entity"] == {"user_id": USERS[418 % 3]}
    (error,) = body["errors"]
    assert error["index"] == 417 and error["status"] == 404 and error["error"] == "EntityNotFound"
    assert "user_id='nobody'" in error["message"]
    # every instance failed: the status of the first failure, with the same details
    r = httpx.post(
        f"{server.url}{PREDICT}",
        json={"instances": [{"entity": {"user_id": "nobody"}}]},
        headers=server.headers(),
    )
    assert r.status_code == 404 and r.json()["errors"][0]["index"] == 0


@pytest.mark.parametrize(
    ("body", "content_type", "role", "status", "says"),
    [
        (b'{"entity": ', None, "service", 400, "not valid JSON"),
        (b"[1, 2]", None, "service", 400, "must be a JSON object"),
        (b'{"features": {}}', None, "service", 422, "entity is required"),
        (b'{"entity": {"user_id": ["x"]}}', None, "service", 422, "entity.user_id must be"),
        (b'{"entity": {}}', None, "service", 422, "entity.user_id is required"),
        (
            b'{"entity": {"user_id": "u_1"}, "features": {"x": 1}}',
            None,
            "service",
            422,
            "features.x",
        ),
        (
            b'{"entity": {"user_id": "u_1"}, "extra": 1}',
            None,
            "service",
            422,
            "extra is not a field",
        ),
        (
            b'{"entity": {"user_id": "u_1", "shop": "s"}}',
            None,
            "service",
            422,
            "entity.shop is not",
        ),
        (
            b'{"entity": {"user_id": "u_1"}, "instances": []}',
            None,
            "service",
            422,
            "either entity",
        ),
        (
            b'{"instances": [{"entity": {"user_id": "u_1"}, "x": 1}]}',
            None,
            "service",
            422,
            "instances[0].x is not a field",
        ),
        (b'{"entity": {"user_id": 1e30}}', None, "service", 422, "string or an integer"),
        (
            b'{"entity": {"user_id": -9223372036854775809}}',
            None,
            "service",
            422,
            "arrived as a float beyond 2**53, which is not exact: send it as a string",
        ),
        (b'{"entity": {"user_id": "u_0000006"}}', "text/plain", "service", 415, "text/plain"),
        (
            b'{"entity": {"user_id": "u_0000006"}}',
            "application/x-www-form-urlencoded",
            "service",
            415,
            "reads application/json",
        ),
        (b'{"entity": {"user_id": "nobody"}}', None, "service", 404, "no online features"),
        (b'{"entity": {"user_id": "u_0000006"}}', None, None, 401, "missing API key"),
        (b'{"entity": {"user_id": "u_0000006"}}', None, "bogus", 401, "unknown or revoked"),
        (b'{"entity": {"user_id": "u_0000006"}}', None, "viewer", 403, "may not"),
        (b'{"instances": []}', None, "service", 422, "instances must be a list"),
    ],
)
def test_bad_requests_get_a_clear_status_and_body(
    server: Server, body: bytes, content_type: str | None, role: str | None, status: int, says: str
) -> None:
    headers = {"Authorization": "Bearer gm_x_y"} if role == "bogus" else server.headers(role)
    if content_type:
        headers["Content-Type"] = content_type
    r = httpx.post(f"{server.url}{PREDICT}", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert says in r.json()["message"]
    assert r.json()["status"] == status


def test_unauthorized_answers_say_how_to_authenticate(server: Server) -> None:
    missing = httpx.post(f"{server.url}{PREDICT}", json={})
    assert missing.headers["www-authenticate"] == 'Bearer realm="gristmill"'
    wrong = httpx.post(f"{server.url}{PREDICT}", json={}, headers={"Authorization": "Bearer x"})
    assert wrong.headers["www-authenticate"] == 'Bearer realm="gristmill", error="invalid_token"'


def test_unknown_service_oversized_body_wrong_method_and_route(server: Server) -> None:
    r = httpx.post(f"{server.url}/v1/services/nope/predict", json={}, headers=server.headers())
    assert r.status_code == 404 and r.json()["error"] == "UnknownServiceError"
    big = b'{"entity": {"user_id": "' + b"x" * (2 << 20) + b'"}}'
    r = httpx.post(f"{server.url}{PREDICT}", content=big, headers=server.headers())
    assert r.status_code == 413
    wrong = httpx.get(f"{server.url}{PREDICT}")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    allow = httpx.delete(f"{server.url}/v2/models/churn").headers["allow"]
    assert sorted(allow.split(", ")) == ["GET", "HEAD"]  # in Starlette's (set) order
    assert httpx.get(f"{server.url}/nowhere").json()["status"] == 404


def test_metrics_and_openapi_need_a_key_by_default(server: Server) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers=server.headers()).status_code == 403
    assert httpx.get(f"{server.url}/openapi.json").status_code == 401
    for role in ("viewer", "admin"):
        assert httpx.get(f"{server.url}/metrics", headers=server.headers(role)).status_code == 200
    httpx.post(
        f"{server.url}{PREDICT}", json={"entity": {"user_id": USERS[0]}}, headers=server.headers()
    )
    text = httpx.get(f"{server.url}/metrics", headers=server.headers("viewer")).text
    assert (
        'gristmill_request_seconds_count{route="/v1/services/{name}/predict",service="churn",'
        'status="200"}'
    ) in text
    assert 'gristmill_decisions_total{decision="' in text
    doc = httpx.get(f"{server.url}/openapi.json", headers=server.headers()).json()
    assert PREDICT in doc["paths"] and doc["openapi"] == "3.1.0"


def test_the_openapi_document_is_valid(server: Server) -> None:
    from openapi_spec_validator import validate

    doc = httpx.get(f"{server.url}/openapi.json", headers=server.headers("viewer")).json()
    validate(doc)  # raises on an invalid document
    entity = doc["components"]["schemas"]["churn.One"]["properties"]["entity"]
    assert entity["required"] == ["user_id"] and entity["additionalProperties"] is False
    responses = doc["paths"][PREDICT]["post"]["responses"]
    assert "Batch" in json.dumps(responses["200"]) and "415" in responses
    assert "/v2/models/churn/versions/{version}/infer" in doc["paths"]


def test_public_metrics_is_a_setting(project: Built) -> None:
    with open(project.root / "gristmill.toml", "a") as handle:
        handle.write('\n[serve]\nmetrics = "public"\nopenapi = "public"\n')
    server = start(project)
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 200
        assert httpx.get(f"{server.url}/openapi.json").status_code == 200
        assert httpx.post(f"{server.url}{PREDICT}", json={}).status_code == 401
    finally:
        server.stop()


def _random_path() -> str:
    alphabet = string.ascii_letters + string.digits + "%-_.~"
    return "/" + "".join(random.choices(alphabet, k=random.randint(1, 60)))


def test_invented_paths_do_not_grow_the_metrics(server: Server) -> None:
    """10,000 requests to random paths (and services) without a key: the exposition keeps
    its size, and a prediction during scrapes answers in its usual time."""

    def hammer(n: int) -> None:
        with httpx.Client() as client:
            for i in range(n):
                path = _random_path() if i % 2 else f"/v1/services/{_random_path()[1:]}/predict"
                client.post(f"{server.url}{path}", content=b"{}")

    threads = [threading.Thread(target=hammer, args=(2_500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = server.headers("viewer")
    text = httpx.get(f"{server.url}/metrics", headers=reader).text
    assert len(text.encode()) < 30_000, len(text)
    assert 'service="_other"' in text and 'route="unmatched"' in text

    with httpx.Client() as client:
        normal = [_timed(lambda: server.predict(client, USERS[0])) for _ in range(100)]
        stop = threading.Event()

        def scrape() -> None:
            with httpx.Client() as scraper:
                while not stop.is_set():
                    scraper.get(f"{server.url}/metrics", headers=reader)

        scraper = threading.Thread(target=scrape)
        scraper.start()
        during = [_timed(lambda: server.predict(client, USERS[0])) for _ in range(100)]
        stop.set()
        scraper.join()
    # the scrapes share the worker, so allow some slack; before the fix one took 2.9 s
    assert statistics.median(during) < max(5 * statistics.median(normal), 0.02)
    assert max(during) < 0.25


def _timed(call: Callable[[], httpx.Response]) -> float:
    clock = time.perf_counter()
    assert call().status_code == 200
    return time.perf_counter() - clock


def test_a_client_that_leaves_during_the_upload_is_not_an_error(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    for _ in range(5):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {server.keys['service']}\r\nContent-Length: 1000\r\n"
                '\r\n{"entity": '.encode()
            )
    time.sleep(0.5)
    text = httpx.get(f"{server.url}/metrics", headers=server.headers("viewer")).text
    assert 'status="500"' not in text and 'status="499"' in text
    assert "Traceback" not in server.stderr() and "internal error" not in server.stderr()


def test_a_promotion_is_picked_up_without_restart_or_failed_requests(project: Built) -> None:
    server = start(project)
    ws = Workspace.open(server.root)
    try:
        assert ws.models.train("churn").ok
        seen: set[int] = set()
        statuses: set[int] = set()
        deadline = time.monotonic() + 15
        ws.models.promote("churn", 2, reason="hot swap test")
        with httpx.Client() as client:
            while time.monotonic() < deadline and 2 not in seen:
                r = server.predict(client, USERS[0])
                statuses.add(r.status_code)
                seen.add(r.json().get("model_version"))
    finally:
        ws.close()
        server.stop()
    assert statuses == {200}
    assert 2 in seen


def test_schemathesis_with_every_check_finds_nothing(server: Server, tmp_path: Path) -> None:
    """Every check of schemathesis over the document the server publishes. An OIP input's
    shape must hold as many values as its data, which JSON Schema cannot express: the
    server answers 400 there, so 400 is expected for valid-looking infer bodies."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[[operations]]\ninclude-path-regex = "/infer$"\n'
        "[operations.checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "400", "401", "403", "404"]\n'
    )
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run"]
    command += [f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "30"]
    command += ["--seed", "7", "--phases", "examples,coverage,fuzzing", "--max-failures", "10"]
    command += ["-H", f"Authorization: Bearer {server.keys['admin']}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:]
    summary = done.stdout.split("Test cases:")[-1]
    assert " passed" in done.stdout and "failed" not in summary, done.stdout[-3000:]


def test_cli_tokens_and_predictions(server: Server, cli: Callable[..., CliResult]) -> None:
    p = ("--project", str(server.root))
    unknown = cli("tokens", "revoke", "nope", *p)
    assert unknown.code == 2 and "unknown active key 'nope'" in unknown.stderr
    bad = cli("predictions", "churn", "--since", "1x", *p)
    assert bad.code == 2 and "cannot read the duration '1x'" in bad.stderr
    endless = cli("predictions", "churn", "--since", "99999999999999999999d", *p)
    assert endless.code == 2 and "longer than dates go" in endless.stderr
    with httpx.Client() as client:  # a few, so that --limit has newer and older to choose
        answers = [server.predict(client, "u_0000011") for _ in range(5)]
    r = answers[-1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if {a.json()["request_id"] for a in answers} <= set(logged_ids(server.root)):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the prediction never reached the log")
    rows = cli("predictions", "churn", "--since", "1h", "--limit", "1000", "--json", *p).json()
    assert r.json()["request_id"] in {row["request_id"] for row in rows}
    ages = cli("predictions", "churn", "--since", "1000000d", "--limit", "1000", "--json", *p)
    assert r.json()["request_id"] in {row["request_id"] for row in ages.json()}
    newest = cli("predictions", "churn", "--limit", "3", "--json", *p).json()
    everything = sorted(rows, key=lambda row: row["at"], reverse=True)
    assert len(rows) > 3 and [x["request_id"] for x in newest] == [
        x["request_id"] for x in everything[:3]
    ]
    created = cli("tokens", "create", "--role", "viewer", "--json", *p).json()
    assert cli("tokens", "revoke", created["id"], *p).code == 0
    listed = {t["id"]: t for t in cli("tokens", "list", "--json", *p).json()}
    assert listed[created["id"]]["revoked_at"] is not None and "hash" not in listed[created["id"]]


def test_a_new_key_works_within_a_second_and_a_revoked_one_stops_within_five(
    server: Server, cli: Callable[..., CliResult]
) -> None:
    p = ("--project", str(server.root))
    created = cli("tokens", "create", "--role", "service", "--json", *p).json()
    body = {"entity": {"user_id": "u_0000006"}}
    url = f"{server.url}/v1/services/churn/predict"
    headers = {"Authorization": f"Bearer {created['token']}"}
    with httpx.Client() as client:
        clock = time.monotonic()
        while client.post(url, json=body, headers=headers).status_code != 200:
            assert time.monotonic() - clock < 1.5, "a new key did not work within a second"
            time.sleep(0.05)
        assert cli("tokens", "revoke", created["id"], *p).code == 0
        clock = time.monotonic()
        while (status := client.post(url, json=body, headers=headers).status_code) == 200:
            assert time.monotonic() - clock < 5.5, "a revoked key still worked after 5 s"
            time.sleep(0.1)
        assert status == 401
