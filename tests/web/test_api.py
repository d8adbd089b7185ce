"""The REST API: every route for every role, the published table of roles, schemathesis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gristmill.access import PERMISSIONS
from gristmill.definitions.config import ROLE_NAMES
from gristmill.web.api import PREFIX, ROUTES, ApiRoute, roles_table
from tests.web.conftest import UiServer, logged_in

DOCS = Path(__file__).parents[2] / "docs" / "access.md"
NAMES = {
    "tables": "user_profile",
    "models": "churn",
    "monitors": "churn_drift",
    "services": "churn",
    "lineage": "user_profile",
}
BODIES: dict[str, dict[str, Any]] = {
    "/runs": {"select": ["+user_profile"]},
    "/models/{name}/promote": {"version": 1, "alias": "challenger", "reason": "api test"},
    "/models/{name}/rollback": {"alias": "challenger", "reason": "api test"},
    "/backfills": {"table": "user_profile"},
    "/backfills/plan": {"table": "user_profile"},
    "/query": {"sql": "SELECT count(*) AS n FROM user_profile"},
    "/queries": {"name": "count", "sql": "SELECT count(*) AS n FROM user_profile"},
}


def call(server: UiServer, route: ApiRoute, role: str | None, run_id: str) -> httpx.Response:
    path = route.path.replace("{name}", NAMES.get(route.tag, "churn"))
    path = path.replace("{id}", run_id).replace("{ref}", "1")
    params = {"a": "1", "b": "1", "version": "1"} if route.tag == "models" else {}
    headers = server.headers(role) if role else {}
    body = BODIES.get(route.path) if route.method == "POST" else None
    return httpx.request(
        route.method,
        server.url + PREFIX + path,
        params=params,
        json=body,
        headers=headers,
        timeout=60,
    )


def test_every_route_answers_every_role_as_the_published_table_says(ui_server: UiServer) -> None:
    runs = httpx.get(ui_server.url + PREFIX + "/runs", headers=ui_server.headers("admin")).json()
    run_id = runs[-1]["run_id"]
    for route in ROUTES:
        for role in ROLE_NAMES:
            r = call(ui_server, route, role, run_id)
            allowed = route.action in PERMISSIONS[role]
            where = f"{route.method} {route.path} as {role}: {r.status_code} {r.text[:300]}"
            if allowed:
                assert r.status_code < 400 or r.status_code in (404, 409, 422), where
                assert r.status_code != 403, where
            else:
                assert r.status_code == 403, where
                assert f"(role {role}) may not" in r.json()["message"], where
        anonymous = call(ui_server, route, None, run_id)
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "Unauthorized"
    # the table the docs publish is the table that is enforced
    assert roles_table() in DOCS.read_text(), "docs/access.md is out of date: paste roles_table()"


def test_bad_input_gets_a_clear_error_never_a_500(ui_server: UiServer) -> None:
    admin = ui_server.headers("admin")
    cases = [
        ("GET", "/tables/nope", None, 404, "no table named 'nope'"),
        ("GET", "/tables/user_profile/sample?limit=abc", None, 400, "not a whole number"),
        ("GET", "/tables/user_profile/sample?limit=0", None, 400, "must be in 1..10000"),
        ("GET", "/runs?status=sleeping", None, 404, "unknown run status"),
        ("POST", "/query", {"sql": "DROP TABLE users"}, 400, "only SELECT queries"),
        ("POST", "/query", {"sql": 1}, 400, "sql: Input should be a valid string"),
        ("POST", "/query", {"sql": "SELECT 1", "extra": 1}, 400, "extra: Extra inputs"),
        ("POST", "/models/churn/promote", {"version": 99}, 404, "has no version 99"),
        (
            "POST",
            "/models/churn_strict/promote",
            {"version": 1},
            409,
            "did not pass `roc_auc >= 0.99`",
        ),
        ("GET", "/models/churn/compare?a=1&b=7", None, 404, "no version 7"),
        ("GET", "/nothing", None, 404, "no page or endpoint"),
    ]
    for method, path, body, status, message in cases:
        r = httpx.request(method, ui_server.url + PREFIX + path, json=body, headers=admin)
        assert (r.status_code, r.headers["content-type"]) == (status, "application/json"), (
            path,
            r.text,
        )
        assert message in r.json()["message"], (path, r.json())
        assert r.json()["hint"] is None or isinstance(r.json()["hint"], str)
    raw = httpx.post(
        ui_server.url + PREFIX + "/query",
        content=b"{nope",
        headers={**admin, "content-type": "application/json"},
    )
    assert raw.status_code == 400 and "Invalid JSON" in raw.json()["message"]
    form = httpx.post(
        ui_server.url + PREFIX + "/query",
        content=b"sql=1",
        headers={**admin, "content-type": "text/plain"},
    )
    assert form.status_code == 400 and "reads application/json" in form.json()["message"]
    bad_key = httpx.get(
        ui_server.url + PREFIX + "/tables", headers={"Authorization": "Bearer gm_x_y"}
    )
    assert bad_key.status_code == 401 and "unknown or revoked" in bad_key.json()["message"]
    assert bad_key.headers["www-authenticate"].startswith("Bearer")


def test_the_audit_actor_is_the_key_and_a_viewer_cannot_promote(ui_server: UiServer) -> None:
    url = ui_server.url + PREFIX
    refused = httpx.post(
        url + "/models/churn/promote", json={"version": 1}, headers=ui_server.headers("viewer")
    )
    assert refused.status_code == 403 and "may not promote models" in refused.json()["message"]
    override = httpx.post(
        url + "/models/churn_strict/promote",
        json={"version": 1, "force": True, "reason": "x"},
        headers=ui_server.headers("engineer"),
    )
    assert (
        override.status_code == 403
        and "may not override failing gates" in override.json()["message"]
    )
    done = httpx.post(
        url + "/models/churn/promote",
        json={"version": 1, "reason": "<b>api</b>"},
        headers=ui_server.headers("engineer"),
    )
    assert done.status_code == 200, done.text
    key_id = ui_server.keys["engineer"].split("_")[1]
    assert done.json()["actor"] == f"key:{key_id}"
    trail = httpx.get(url + "/audit", headers=ui_server.headers("viewer")).json()
    assert any(e["actor"] == f"key:{key_id}" and e["reason"] == "<b>api</b>" for e in trail)


def test_schemathesis_with_every_check_finds_nothing(ui_server: UiServer, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422"]\n'
    )
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run"]
    command += [f"{ui_server.url}{PREFIX}/openapi.json", "--checks", "all", "--max-examples", "15"]
    command += ["--seed", "11", "--phases", "examples,coverage,fuzzing", "--max-failures", "10"]
    command += ["-H", f"Authorization: Bearer {ui_server.keys['admin']}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:]
    assert " passed" in done.stdout and "failed" not in done.stdout.split("Test cases:")[-1]


def test_a_revoked_key_ends_its_ui_sessions_within_five_seconds(ui_server: UiServer) -> None:
    import time

    from gristmill.workspace import Workspace

    ws = Workspace.open(ui_server.root)
    key = ws.tokens.create("viewer", "short-lived")
    client = logged_in(ui_server.url, key.token)
    assert client.get("/runs").status_code == 200
    ws.tokens.revoke(key.id)
    ws.close()
    clock = time.monotonic()
    while client.get("/runs").status_code == 200:
        assert time.monotonic() - clock < 6.5, "the session outlived its revoked key"
        time.sleep(0.25)
    assert client.get("/runs").headers["location"].startswith("/login")
    client.close()


def test_gm_connect_reads_the_example_s_tables_and_no_model(ui_server: UiServer) -> None:
    import gristmill as gm

    con = gm.connect(str(ui_server.root), token=ui_server.keys["analyst"])
    views = {row[0] for row in con.sql("SELECT view_name FROM duckdb_views()").fetchall()}
    assert {"user_profile", "transactions", "churn_training"} <= views and "churn" not in views
    assert "__gm_" not in str(con.sql("SELECT sql FROM duckdb_views()").fetchall())
    ((n,),) = con.sql("SELECT count(*) FROM user_profile").fetchall()
    assert n > 0
    pinned = gm.connect(str(ui_server.root), versions={"user_profile": 0})
    assert pinned.sql("SELECT count(*) FROM user_profile").fetchall() == [(n,)]
    r = httpx.post(
        ui_server.url + PREFIX + "/query",
        json={"sql": "SELECT * FROM churn"},
        headers=ui_server.headers("analyst"),
    )
    assert r.status_code == 400 and "no table named 'churn'" in r.json()["message"]
    deep = httpx.post(
        ui_server.url + PREFIX + "/query",
        json={"sql": "SELECT " + "(" * 80 + "1" + ")" * 80},
        headers=ui_server.headers("analyst"),
    )
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["message"]
    wide = httpx.post(
        ui_server.url + PREFIX + "/query",
        json={"sql": "SELECT repeat('x', 100000) || i AS s FROM range(5000) t(i)"},
        headers=ui_server.headers("analyst"),
    )
    assert wide.status_code == 400 and "the result is over 100 MB" in wide.json()["message"]


def test_a_running_server_sees_edited_definitions(ui_server: UiServer) -> None:
    import time

    extra = ui_server.root / "sql" / "fresh_table.sql"
    url, viewer = ui_server.url + PREFIX + "/tables", ui_server.headers("viewer")
    try:
        extra.write_text("SELECT user_id FROM users\n")
        deadline = time.monotonic() + 5
        while "fresh_table" not in {t["name"] for t in httpx.get(url, headers=viewer).json()}:
            assert time.monotonic() < deadline, "the new table never appeared"
            time.sleep(0.3)
    finally:
        extra.unlink()
    deadline = time.monotonic() + 5
    while "fresh_table" in {t["name"] for t in httpx.get(url, headers=viewer).json()}:
        assert time.monotonic() < deadline, "the removed table stayed"
        time.sleep(0.3)


def test_sessions_survive_a_sigkill_and_a_sigterm_does_not_wait_for_a_long_query(
    ui_server: UiServer,
) -> None:
    """A second real server on the same project: killed with SIGKILL mid-session, a new
    one honours the session (the cookie is signed, nothing was in the killed process);
    stopped with SIGTERM during a query that would run for minutes, it exits in seconds."""
    import signal
    import threading
    import time

    from tests.conftest import spawn
    from tests.web.conftest import free_port, wait_until_up

    def start() -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        process = spawn(ui_server.root, "ui", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, process)
        return process, url

    first, url = start()
    client = logged_in(url, ui_server.keys["analyst"])
    cookie = client.cookies["gm_session"]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    second, url = start()
    again = httpx.get(url + "/sql", cookies={"gm_session": cookie})
    assert again.status_code == 200 and "SQL" in again.text
    slow = "SELECT count(*) FROM user_profile, range(5000000000) r WHERE r.range % 7 = 11"
    answers: list[int] = []

    def query() -> None:
        try:
            r = httpx.post(url + PREFIX + "/query", json={"sql": slow},
                           headers=ui_server.headers("analyst"), timeout=60)  # fmt: skip
            answers.append(r.status_code)
        except httpx.TransportError:
            answers.append(0)

    worker = threading.Thread(target=query)
    worker.start()
    time.sleep(1.5)
    clock = time.monotonic()
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=30)
    assert time.monotonic() - clock < 8, "the stop waited for the query"
    worker.join(30)
    assert answers and answers[0] != 200
    client.close()


def test_a_session_ends_when_its_hours_are_up(ui_server: UiServer) -> None:
    import time

    from gristmill.workspace import Workspace
    from gristmill.workspace.auth import Keys, Sessions

    ws = Workspace.open(ui_server.root)
    sessions = Sessions(Keys(ws), ui_server.root / ".gristmill" / "ui-secret", hours=1.5 / 3600)
    cookie, opened = sessions.open(ui_server.keys["viewer"])
    read = sessions.read(cookie)
    assert read is not None and (read.principal, read.csrf) == (opened.principal, opened.csrf)
    time.sleep(2)
    assert sessions.read(cookie) is None
    ws.close()
    secret = ui_server.root / ".gristmill" / "broken-secret"
    secret.write_text("not hex")
    from gristmill.errors import ConfigError

    with pytest.raises(ConfigError, match="is not hex"):
        Sessions(Keys(ws), secret, hours=1)
