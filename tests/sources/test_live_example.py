"""`gristmill init --example churn --live`: the example on the machine's PostgreSQL,
MariaDB and NATS JetStream, read from there, e-mail pseudonymized."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gristmill.workspace import Workspace
from tests.conftest import PG, gm, gm_json

MARIADB = "mysql://root@127.0.0.1:3306/test"


def pg(sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def mariadb(sql: str) -> str:
    done = subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-u", "root", "test", "-N", "-e", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


async def _nats(stream: str, payloads: list[bytes] | None) -> None:
    import nats

    client = await nats.connect("nats://127.0.0.1:4222")
    js = client.jetstream()
    if payloads is None:
        await js.delete_stream(stream)
    else:
        for payload in payloads:
            await js.publish(f"{stream.lower()}.events", payload)
    await client.close()


def init(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gristmill", "init", str(root), "--example", "churn", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path / "demo"
    done = init(root, "--live", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    names = {
        "schema": created["live"]["postgres"].split()[-1].split(".")[0],
        "table": created["live"]["mysql"].split()[-1],
        "stream": created["live"]["nats"].split()[-1],
        "users": created["live"]["users"],
    }
    try:
        yield root, names
    finally:
        pg(f'DROP SCHEMA IF EXISTS "{names["schema"]}" CASCADE')
        mariadb(f"DROP TABLE IF EXISTS `{names['table']}`")
        asyncio.run(_nats(names["stream"], None))


def test_the_live_example_reads_its_servers_and_keeps_only_pseudonyms(
    live: tuple[Path, dict[str, str]],
) -> None:
    root, names = live
    assert not (root / "data" / "users").exists() and (root / "data" / "labels").exists()
    wal_level = pg("SHOW wal_level")[0][0]  # the shared server's: replica on these machines
    if wal_level != "logical":
        assert names["users"] == (
            "read by their updated_at cursor: no change data capture, its wal_level is "
            f"{wal_level}, not logical"
        )
    kinds = {s["name"]: s["kind"] for s in gm_json(root, "sources")}
    assert kinds == {
        "users": "database",
        "transactions": "database",
        "events": "stream",
        "feedback": "intake",
        "churn_labels": "files",
    }
    run = gm(root, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    ws = Workspace.open(root)
    (users,) = pg(f'SELECT count(*) FROM "{names["schema"]}".users')[0]
    quarantined = len(ws.quarantine("users"))
    assert ws.read("users").num_rows + quarantined == users
    transactions = int(mariadb(f"SELECT count(*) FROM `{names['table']}`"))
    assert ws.read("transactions").num_rows + len(ws.quarantine("transactions")) == transactions
    emails = ws.read("users")["email"].to_pylist()
    assert all(re.fullmatch(r"[0-9a-f]{64}", e) for e in emails)
    for path in (root / "lake").rglob("*"):
        if path.is_file():
            assert b"@example.com" not in path.read_bytes(), path
    assert ws.read("churn_training").num_rows > 0  # the model trained on it
    assert gm(root, "run").returncode == 0  # and nothing new: a no-op

    # new rows at each server reach the tables with the next run
    pg(
        f"""INSERT INTO "{names["schema"]}".users (user_id, email, signup_ts, plan, country,
            birth_year) VALUES ('u_9999999', 'New@Example.com', '2025-12-01', 'basic', 'DE',
            '1990')"""
    )
    mariadb(
        f"INSERT INTO `{names['table']}` (txn_id, user_id, ts, amount, merchant_category, "
        "channel) VALUES ('t_new', 'u_9999999', '2026-01-02 10:00:00', '12.50', 'grocery', "
        "'web')"
    )
    event = {"event_id": "e_new", "user_id": "u_9999999", "ts": "2026-01-02T10:05:00",
             "event_type": "login", "device": "web", "duration_s": 3.0}  # fmt: skip
    asyncio.run(_nats(names["stream"], [json.dumps(event).encode()]))
    ws = Workspace.open(root)
    reasons = {s.name: s.reason for s in ws.plan().steps if s.action.value == "run"}
    assert {"users", "transactions", "events"} <= set(reasons), reasons
    assert ws.run().ok
    ws = Workspace.open(root)
    assert "u_9999999" in ws.read("users")["user_id"].to_pylist()
    assert "t_new" in ws.read("transactions")["txn_id"].to_pylist()
    assert "e_new" in ws.read("events")["event_id"].to_pylist()


def test_live_says_which_server_it_cannot_reach_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "demo"

    def made() -> int:
        return len(pg("SELECT 1 FROM pg_namespace WHERE nspname LIKE 'gm_demo_%'"))

    before = made()
    proc = init(root, "--live", "--postgres", "postgresql://postgres@127.0.0.1:1/test")
    assert proc.returncode != 0
    assert "--live: cannot reach PostgreSQL at 127.0.0.1:1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not root.exists()
    # a server that is down is found before anything is loaded anywhere
    proc = init(root, "--live", "--mysql", "mysql://root@127.0.0.1:1/test")
    assert "cannot reach MariaDB/MySQL at 127.0.0.1:1" in proc.stderr, proc.stderr
    assert made() == before and not root.exists()
    for option, url, says in [
        ("--postgres", "garbage", "--postgres 'garbage' is not a PostgreSQL URL"),
        ("--nats", "garbage://x", "--nats 'garbage://x' is not a NATS URL"),
    ]:
        proc = init(root, "--live", option, url)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    proc = init(root, "--live", "--drift")
    assert proc.returncode == 2 and "do not go together" in proc.stderr


def test_live_keeps_a_password_out_of_the_project(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    proc = init(root, "--live", "--postgres", "postgresql://postgres:s3cr3t@127.0.0.1:5432/test")
    assert proc.returncode == 0, proc.stderr
    schema = re.search(r"(gm_demo_[0-9a-f]{6})\.users", proc.stdout)
    assert schema is not None, proc.stdout
    try:
        assert "s3cr3t" not in proc.stdout + proc.stderr
        text = (root / "sources.py").read_text()
        assert "s3cr3t" not in text and "${GRISTMILL_LIVE_PG_PASSWORD}" in text
        assert "export GRISTMILL_LIVE_PG_PASSWORD" in proc.stdout
    finally:
        table = re.search(r"(gm_demo_[0-9a-f]{6}_transactions)", proc.stdout)
        stream = re.search(r"(GM_DEMO_[0-9A-F]{6}_EVENTS)", proc.stdout)
        pg(f'DROP SCHEMA IF EXISTS "{schema.group(1)}" CASCADE')
        if table:
            mariadb(f"DROP TABLE IF EXISTS `{table.group(1)}`")
        if stream:
            asyncio.run(_nats(stream.group(1), None))


def test_the_live_example_takes_posted_feedback(live: tuple[Path, dict[str, str]]) -> None:
    import socket
    import time

    import httpx

    root, _ = live
    key = Workspace.open(root).tokens.create("ingest").token
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gristmill",
            "serve",
            "--intake-only",
            "-p",
            str(root),
            "--port",
            str(port),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        answer = httpx.post(
            f"{url}/v1/intake/feedback",
            content='[{"user_id": "u_0000006", "score": 9, "comment": "Great app, Ann"}, '
            '{"user_id": "u_0000007", "score": 11}]',
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Idempotency-Key": "survey-1",
            },  # fmt: skip
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    outcome = Workspace.open(root).ingest(["feedback"])
    assert outcome.ok and outcome.result.steps[0].quarantined == 1  # a score of 11
    landed = Workspace.open(root).read("feedback").to_pylist()
    assert [r["user_id"] for r in landed] == ["u_0000006"]
    assert re.fullmatch(r"[0-9a-f]{64}", landed[0]["comment"])  # free text: a pseudonym


def test_the_live_example_reads_users_by_change_capture_where_the_server_allows(
    tmp_path: Path, logical_pg: str
) -> None:
    """A PostgreSQL with wal_level=logical and wal2json (the tests' own cluster): the
    example's users come from the server's log, deletes included."""
    import psycopg

    root = tmp_path / "demo"
    done = init(root, "--live", "--postgres", logical_pg, "--json")
    assert done.returncode == 0, done.stderr
    live = json.loads(done.stdout)["live"]
    assert live["users"] == "read by change data capture (a logical replication slot)"
    assert 'capture="logical"' in (root / "sources.py").read_text()
    schema = live["postgres"].split()[-1].split(".")[0]
    try:
        run = gm(root, "run", "users")
        assert run.returncode == 0, run.stdout + run.stderr
        with psycopg.connect(logical_pg, autocommit=True) as conn:
            conn.execute(f"""UPDATE "{schema}".users SET plan = 'premium'
                             WHERE user_id = (SELECT min(user_id) FROM "{schema}".users)""")
            conn.execute(f"""DELETE FROM "{schema}".users
                             WHERE user_id = (SELECT max(user_id) FROM "{schema}".users)""")
            rows = conn.execute(f'SELECT user_id, plan FROM "{schema}".users').fetchall()
        run = gm(root, "run", "users")
        assert run.returncode == 0, run.stdout + run.stderr
        ws = Workspace.open(root)
        table = ws.read("users")
        landed = dict(zip(table["user_id"].to_pylist(), table["plan"].to_pylist(), strict=True))
        kept_out = ws.lake.quarantine_name("users")  # of both extractions
        quarantined = set(
            ws.lake.read(kept_out, ws.lake.latest_version(kept_out))["user_id"].to_pylist()
        )
        assert landed == {u: p for u, p in rows if u not in quarantined}
        assert landed[min(landed)] == "premium"
    finally:
        with psycopg.connect(logical_pg, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = 'gristmill_users'"
            )
        mariadb(f"DROP TABLE IF EXISTS `{live['mysql'].split()[-1]}`")
        asyncio.run(_nats(live["nats"].split()[-1], None))
