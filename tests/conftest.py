"""Shared fixtures: tiny real projects on disk and the CLI run in-process."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gristmill.cli import main
from gristmill.workspace import Workspace

BASIC_MODULE = """
import pyarrow as pa
import gristmill as gm

txns = gm.source(
    "txns", "data/*.csv",
    columns={"id": "VARCHAR", "user_id": "VARCHAR", "amount": "DOUBLE"},
    checks=[gm.not_null("id", "user_id"), gm.unique("id"), gm.in_range("amount", min=0)],
    max_quarantine_share=0.6,
)
"""

BASIC_SQL = {
    "per_user.sql": (
        "select user_id, sum(amount) as total, count(*) as n\nfrom txns\ngroup by user_id\n"
    ),
    "top_users.sql": "select user_id, total\nfrom per_user\nwhere total > 5\n",
}

BASIC_CSV = "id,user_id,amount\n1,u1,10\n2,u1,5\n3,u2,abc\n4,,3\n5,u3,-1\n6,u2,7\n6,u2,8\n"


def write_project(
    root: Path,
    *,
    module: str = BASIC_MODULE,
    sql: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    toml: str = 'name = "t"\n',
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "gristmill.toml").write_text(toml)
    (root / "pipeline.py").write_text(textwrap.dedent(module))
    (root / "sql").mkdir(exist_ok=True)
    for name, text in (BASIC_SQL if sql is None else sql).items():
        (root / "sql" / name).write_text(text)
    (root / "data").mkdir(exist_ok=True)
    for name, text in ({"a.csv": BASIC_CSV} if data is None else data).items():
        (root / "data" / name).write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def workspace(project: Path) -> Workspace:
    ws = Workspace.open(project)
    yield ws
    ws.close()


def gm(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``gristmill ARGS -p ROOT`` in a real process (wide, so tables do not wrap)."""
    return subprocess.run(
        [sys.executable, "-m", "gristmill", *args, "-p", str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def gm_json(root: Path, *args: str) -> Any:
    """``gristmill ARGS --json`` in a real process: it must succeed; its document."""
    proc = gm(root, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def gm_failed_json(root: Path, *args: str) -> Any:
    """``gristmill ARGS --json`` that must exit 1 (a run failed); its document."""
    proc = gm(root, *args, "--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def spawn(root: Path, *args: str) -> subprocess.Popen[str]:
    """``gristmill ARGS -p ROOT`` started in the background (signals are the test's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gristmill", *args, "-p", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers["Content-Length"])
        Receiver.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Receiver.bodies = []
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


PG = "postgresql://postgres@127.0.0.1:5432/test"
"""The local PostgreSQL server (trust auth); tests make databases of their own on it."""


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database as a SQLAlchemy URL; dropped afterwards."""
    import uuid

    import psycopg

    name = f"gm_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A new, empty schema in the local PostgreSQL's database ``test``; dropped afterwards."""
    import uuid

    import psycopg

    name = f"gm_src_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


REDIS = "redis://127.0.0.1:6379/0"


def drop_redis_keys(prefix: str) -> None:
    """Delete what a test wrote to the real Redis under ``gm:<prefix>:``."""
    import redis

    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(match=f"gm:{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def built_example(
    root: Path, *, scale: str, seed: int, append: str = "", promote: bool = True
) -> Workspace:
    """The churn example at ``root`` with ``append`` added to its pipeline.py, run once;
    version 1 of its model promoted to champion (gates overridden: tiny data)."""
    from gristmill.workspace.init import init_project

    init_project(root, example="churn", scale=scale, seed=seed)
    if append:
        with open(root / "pipeline.py", "a") as handle:
            handle.write(append)
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    if promote:
        ws.models.promote("churn", 1, force=True, reason="tests")
    return ws


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="session")
def logical_pg() -> Iterator[str]:
    """A PostgreSQL cluster of the tests' own with ``wal_level = logical`` (initdb in a
    temporary folder, on a free port), for change data capture; its URL. Runs as the
    ``postgres`` user when the tests run as root (initdb refuses root)."""
    import shutil
    import socket
    import tempfile

    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15's server binaries are missing (Debian: postgresql-15)")
    # not under pytest's own temporary folder: the postgres user must reach it
    folder = Path(tempfile.mkdtemp(prefix="gm_logical_pg_"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c wal_level=logical "
        "-c max_replication_slots=20 -c fsync=off"
    )
    libraries = subprocess.run(
        [*as_user, str(PG_BIN / "postgres"), "-C", "output_plugin_libraries", "-D", str(data)],
        capture_output=True,
        text=True,
    )
    if libraries.returncode == 0:  # a server that asks which output plugins may be used
        allowed = libraries.stdout.strip().replace(" ", "")
        options += f" -c output_plugin_libraries={allowed},wal2json"
    subprocess.run(
        [
            *as_user,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
