"""The one checkpoint: roles, the CLI's principal, masks on every read path, the SQL page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gristmill.access import PERMISSIONS, Action, Principal, acting_as
from gristmill.errors import Forbidden, QueryError, Unauthorized
from gristmill.workspace import Workspace
from gristmill.workspace.auth import cli_principal, os_role
from tests.conftest import write_project

KEY = "a-long-random-secret-for-the-access-tests"
MODULE = """
import gristmill as gm

people = gm.source(
    "people", "data/*.csv",
    columns={"id": "BIGINT", "email": "VARCHAR", "phone": "VARCHAR", "age": "INTEGER"},
    checks=[gm.in_range("age", min=0, max=130)],
    pii={"email": "email", "phone": "phone"},
    max_quarantine_share=0.5,
)
"""
SQL = {"adults.sql": "SELECT id, email, age FROM people WHERE age >= 18"}
CSV = (
    "id,email,phone,age\n1,alice@example.com,+49301234,34\n2,bob@example.com,555 0100,12\n"
    "3,,,40\n4,x@y.z,1,-7\n"
)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("GRISTMILL_PII_KEY", KEY)
    root = write_project(tmp_path / "p", module=MODULE, sql=SQL, data={"a.csv": CSV})
    ws = Workspace.open(root)
    assert ws.run().ok
    yield ws
    ws.close()


def as_role(role: str) -> Principal:
    return Principal(f"user:{role}-person", role)


def test_masks_apply_by_role_on_every_read_path(ws: Workspace) -> None:
    clear = {r["id"]: r["email"] for r in ws.read("people").to_pylist()}
    assert len(clear[1]) == 64  # a pseudonym (ingestion), shown clear to the admin
    for role, check in [
        ("viewer", lambda v, c: v is None),
        ("analyst", lambda v, c: v is None if c is None else len(v) == 16 and v != c[:16]),
        ("engineer", lambda v, c: v == c),
    ]:
        with acting_as(as_role(role)):
            for table in ("people", "adults"):  # tagged at the source, carried downstream
                for r in ws.read(table).to_pylist():
                    assert check(r["email"], clear[r["id"]]), (role, table, r)
            sample = ws.sample("people", limit=10).data.to_pylist()
            assert all(check(r["email"], clear[r["id"]]) for r in sample)
            (bad,) = ws.quarantine("people").to_pylist()
            assert check(bad["email"], "x") or role != "viewer"
            if role != "viewer":
                got = ws.queries.run("SELECT id, email FROM adults ORDER BY id")
                assert [r[0] for r in got.rows] == [1, 3]
                assert all(check(r[1], clear[r[0]]) for r in got.rows)
                assert got.masked == ({} if role == "engineer" else {"adults": ["email"]})
    with acting_as(Principal("user:x", "analyst")):
        con = ws.queries.connect()
        (digest,) = con.execute("SELECT email FROM people WHERE id = 1").fetchone()
        assert digest is not None and len(digest) == 16


def test_the_table_of_roles_is_what_authorize_enforces(ws: Workspace) -> None:
    calls = {
        Action.READ: lambda: ws.tables(),
        Action.READ_ROWS: lambda: ws.read("people"),
        Action.QUERY: lambda: ws.queries.run("SELECT 1 AS one FROM people LIMIT 1"),
        Action.RUN: lambda: ws.run(),
        Action.MANAGE_KEYS: lambda: ws.tokens.list(),
    }
    for role, allowed in PERMISSIONS.items():
        for action, call in calls.items():
            with acting_as(as_role(role)):
                if action in allowed:
                    call()
                else:
                    with pytest.raises(Forbidden, match=f"role {role}"):
                        call()


def test_the_cli_principal_comes_from_the_os_user_or_a_key(ws: Workspace) -> None:
    from gristmill.definitions.config import AccessSettings

    assert os_role(AccessSettings(), "anyone") == "admin"  # a laptop: no users named
    named = AccessSettings(users={"alice": "engineer"})
    assert os_role(named, "alice") == "engineer" and os_role(named, "eve") == "viewer"
    assert os_role(AccessSettings(users={"a": "admin"}, default_role="analyst"), "b") == "analyst"
    key = ws.tokens.create("analyst", "notebook")
    me = cli_principal(ws, {"GRISTMILL_TOKEN": key.token})
    assert me == Principal(f"key:{key.id}", "analyst")
    ws.tokens.revoke(key.id)
    with pytest.raises(Unauthorized, match="GRISTMILL_TOKEN holds an unknown or revoked"):
        cli_principal(ws, {"GRISTMILL_TOKEN": key.token})
    assert all("hash" not in k.__dict__ for k in ws.tokens.list())


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM people", "only SELECT queries"),
        ("SELECT 1; DROP TABLE people", "2 statements"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table functions are not allowed"),
        ("SELECT * FROM information_schema.tables", "only the project's tables"),
        ("SELECT * FROM nope", "no table named 'nope'"),
        ("SELECT * FRM people", "does not parse"),
        ("SELECT read_text('/etc/passwd')", "the query failed"),
        ("COPY people TO '/tmp/x.csv'", "only SELECT"),
        ("", "empty"),
    ],
)
def test_the_sql_page_runs_one_read_only_select(ws: Workspace, sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        ws.queries.run(sql)


def test_queries_pin_versions_limit_rows_and_stop_at_the_time_limit(ws: Workspace) -> None:
    first = ws.catalog.latest("people")
    assert first is not None
    (ws.root / "data" / "b.csv").write_text("id,email,phone,age\n5,e@f.g,2,50\n")
    assert ws.run().ok
    now = ws.queries.run("SELECT count(*) AS n FROM people")
    old = ws.queries.run("SELECT count(*) AS n FROM people", versions={"people": first.version})
    when = ws.queries.run("SELECT count(*) AS n FROM people", as_of=first.finished_at)
    assert (now.rows, old.rows, when.rows) == ([[4]], [[3]], [[3]])
    assert old.versions == {"people": first.version}
    with pytest.raises(QueryError, match="has no version to read"):
        ws.queries.run("SELECT * FROM people", as_of=datetime.now(UTC) - timedelta(days=9))
    big = ws.queries.run("SELECT * FROM range(100000) r, people", limit=10)
    assert big.row_count == 10 and big.truncated
    with pytest.raises(QueryError, match="time limit of 0.2 s"):
        ws.queries.run(
            "SELECT count(*) FROM people a, range(100000000) b, range(1000) c", timeout_s=0.2
        )


def test_gm_connect_pins_versions_as_of_a_time_and_masks_for_its_key(ws: Workspace) -> None:
    import gristmill as gm

    first = ws.catalog.latest("people")
    assert first is not None
    (ws.root / "data" / "b.csv").write_text("id,email,phone,age\n5,e@f.g,2,50\n")
    assert ws.run().ok
    analyst = ws.tokens.create("analyst").token
    viewer = ws.tokens.create("viewer").token
    con = gm.connect(str(ws.root), token=analyst, as_of=first.finished_at.isoformat())
    assert con.sql("SELECT count(*) FROM people").fetchall()[0] == (3,)
    ((digest,),) = con.sql("SELECT email FROM people WHERE id = 1").fetchall()
    assert len(digest) == 16  # hashed for an analyst
    latest = gm.connect(str(ws.root), token=analyst)
    assert latest.sql("SELECT count(*) FROM people").fetchall()[0] == (4,)
    with pytest.raises(Forbidden, match="may not run SQL queries"):
        gm.connect(str(ws.root), token=viewer)


def test_a_wrong_role_in_access_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    from gristmill.errors import ConfigError

    toml = 'name = "t"\n\n[access]\nusers = { bob = "god" }\n'
    root = write_project(tmp_path / "p", toml=toml)
    with pytest.raises(ConfigError) as caught:
        Workspace.open(root)
    assert "gristmill.toml:4" in str(caught.value) and "viewer" in str(caught.value)


def test_a_key_made_with_the_old_reader_role_acts_as_a_viewer(ws: Workspace) -> None:
    from gristmill.storage.catalog import ApiToken
    from gristmill.storage.catalog.records import utcnow
    from gristmill.workspace.auth import Keys, hash_token

    ws.catalog.add_token(ApiToken("0ld0ld00", "reader", hash_token("gm_old"), "", utcnow()))
    assert Keys(ws)("gm_old") == Principal("key:0ld0ld00", "viewer")


TAGGED = (
    '"birth_year": "INTEGER",\n        "email": "VARCHAR",\n    },\n    pii={"email": "email"},'
)


def test_a_masked_table_that_is_not_plain_parquet_is_copied_masked_into_gm_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tagging a new column of the example's users makes delta-rs add a reader feature:
    the table is no longer plain Parquet, and the notebook gets a masked copy of it, never
    an unmasked relation it could find in DuckDB's catalog."""
    import gristmill as gm
    from tests.conftest import built_example

    monkeypatch.setenv("GRISTMILL_PII_KEY", KEY)
    ws = built_example(tmp_path / "demo", scale="tiny", seed=2, promote=False)
    sources = ws.root / "sources.py"
    text = sources.read_text().replace(
        '"birth_year": "INTEGER",\n    },',
        TAGGED,
        1,
    )
    sources.write_text(text)
    (csv,) = sorted((ws.root / "data" / "users").glob("*.csv"))
    lines = csv.read_text().splitlines()
    csv.write_text(
        "\n".join([lines[0] + ",email"] + [f"{r},u{i}@x.org" for i, r in enumerate(lines[1:])])
        + "\n"
    )
    ws.close()
    ws = Workspace.open(ws.root)
    assert ws.run().ok
    m = ws.catalog.latest("users")
    assert m is not None and ws.lake.parquet_files("users", m.version) is None  # not plain
    con = gm.connect(str(ws.root), token=ws.tokens.create("analyst").token)
    ws.close()
    catalog = con.sql("SELECT view_name FROM duckdb_views()").fetchall()
    catalog += con.sql("SELECT table_name FROM duckdb_tables()").fetchall()
    assert not [name for (name,) in catalog if name.startswith("__gm_")]
    emails = {e for (e,) in con.sql("SELECT email FROM users").fetchall()}
    assert emails and all(e is None or len(e) == 16 for e in emails)  # hashed for an analyst


def test_the_sql_page_caps_joins_and_queries_at_once(tmp_path: Path) -> None:
    import threading

    from gristmill.errors import QueryBusyError

    toml = 'name = "t"\n\n[access]\nquery_concurrency = 1\nquery_seconds = 5\n'
    ws = Workspace.open(write_project(tmp_path / "p", toml=toml))
    assert ws.run().ok
    table = ws.queries.tables()[0]
    joins = " ".join(f"JOIN {table} t{i} USING (id)" for i in range(1, 65))
    with pytest.raises(QueryError, match="reads tables 65 times; the SQL page takes at most 64"):
        ws.queries.run(f"SELECT count(*) FROM {table} t0 {joins}")
    slow = f"SELECT count(*) FROM {table}, range(2000000000) r WHERE r.range % 7 = 11"
    principal = ws.principal
    outcome: list[str] = []

    def first() -> None:
        with acting_as(principal):
            try:
                ws.queries.run(slow, timeout_s=2)
            except QueryError as exc:
                outcome.append(exc.message)

    worker = threading.Thread(target=first)
    worker.start()
    time.sleep(0.5)
    with pytest.raises(QueryBusyError, match="1 queries are running and none ended within 0.5 s"):
        ws.queries.run("SELECT 1 AS one", timeout_s=0.5)
    worker.join()
    assert outcome and "time limit of 2 s" in outcome[0]
    assert ws.queries.run("SELECT 1 AS one").rows == [[1]]  # the slot is free again
    ws.close()


def test_a_saved_query_is_its_owner_s_to_replace(ws: Workspace) -> None:
    from gristmill.errors import SavedQueryTaken

    ana, bo = Principal("key:aaaa", "analyst"), Principal("key:bbbb", "analyst")
    with acting_as(ana):
        ws.queries.save("adults", "SELECT * FROM adults")
    with acting_as(bo), pytest.raises(SavedQueryTaken, match="is key:aaaa's"):
        ws.queries.save("adults", "SELECT 1 AS x FROM adults")
    with acting_as(bo), pytest.raises(SavedQueryTaken):
        ws.queries.delete("adults")
    with acting_as(Principal("key:cccc", "admin")):
        ws.queries.save("adults", "SELECT id FROM adults")
    (saved,) = ws.queries.saved()
    assert (saved.owner, saved.sql) == ("key:cccc", "SELECT id FROM adults")
