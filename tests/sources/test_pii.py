"""Personal data at ingestion: pseudonyms in the engine, nothing raw kept anywhere."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from gristmill.errors import DefinitionError
from gristmill.workspace import Workspace
from tests.conftest import write_project

KEY = "a-long-random-secret-for-the-tests"
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
CSV = (
    "id,email,phone,age\n"
    "1,Alice@Example.com ,+49 (30) 123-45,34\n"
    "2,alice@example.com,+493012345,35\n"
    "3,,,40\n"
    "4,carol@example.org,555 0100,-7\n"
)


def pseudonym(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_tagged_columns_land_as_keyed_pseudonyms_and_nothing_raw_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRISTMILL_PII_KEY", KEY)
    root = write_project(tmp_path / "p", module=MODULE, sql={}, data={"a.csv": CSV})
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok and outcome.result.steps[0].quarantined == 1
    rows = {r["id"]: r for r in ws.read("people").to_pylist()}
    # normalized before hashing: the same person's two spellings join
    assert rows[1]["email"] == rows[2]["email"] == pseudonym("alice@example.com")
    assert rows[1]["phone"] == rows[2]["phone"] == pseudonym("+493012345")
    assert rows[3]["email"] is None and rows[3]["phone"] is None
    assert rows[1]["age"] == 34  # untagged columns as they were
    # the quarantined row keeps its pseudonyms, not the raw e-mail
    (bad,) = ws.quarantine("people").to_pylist()
    assert bad["email"] == pseudonym("carol@example.org") and bad["age"] == "-7"
    # no raw value and no key in any file gristmill wrote (the lake's Parquet and log,
    # the catalog, logs); Parquet is compressed, so the log's statistics are read too
    raw = [b"example.com", b"Example.com", b"carol@", b"123-45", KEY.encode()]
    for path in every_file(root / "lake") + every_file(root / ".gristmill"):
        data = path.read_bytes()
        assert not [r for r in raw if r in data], path
    for log in (root / "lake" / "people" / "_delta_log").glob("*.json"):
        for line in log.read_text().splitlines():
            add = json.loads(line).get("add")
            if add:
                stats = json.loads(add["stats"])
                assert "email" not in stats["minValues"] and "phone" not in stats["maxValues"]
                assert "id" in stats["minValues"]  # the others keep theirs


def test_without_a_key_the_source_says_how_to_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRISTMILL_PII_KEY", raising=False)
    root = write_project(tmp_path / "p", module=MODULE, sql={}, data={"a.csv": CSV})
    step = Workspace.open(root).run().result.steps[0]
    assert "has personal-data columns (email, phone) and no pseudonym key" in step.error["message"]
    assert "GRISTMILL_PII_KEY" in step.error["hint"]
    assert not (root / "lake" / "people").exists()
    # a key file named in gristmill.toml works the same
    (root / "pii.key").write_text(KEY + "\n")
    (root / "gristmill.toml").write_text('name = "t"\n[pii]\nkey_file = "pii.key"\n')
    ws = Workspace.open(root)
    assert ws.run().ok
    assert ws.read("people")["email"][0].as_py() == pseudonym("alice@example.com")


@pytest.mark.parametrize(
    ("pii", "expected"),
    [
        (
            '{"id": "id"}',
            "'id' is personal data, stored as its pseudonym (text), but is declared BIGINT",
        ),
        ('{"email": "mail"}', "unknown kind of personal data 'mail'"),
        ('{"nope": "email"}', "pii= names 'nope', which columns= does not declare"),
        ('["email"]', "pii= maps columns to kinds"),
    ],
)
def test_bad_tags_are_load_errors(tmp_path: Path, pii: str, expected: str) -> None:
    module = MODULE.replace('pii={"email": "email", "phone": "phone"}', f"pii={pii}")
    root = write_project(tmp_path / "p", module=module, sql={}, data={"a.csv": CSV})
    with pytest.raises(DefinitionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Workspace.open(root).plan()


def test_database_source_pseudonymizes_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_schema: str
) -> None:
    import psycopg

    from tests.conftest import PG

    monkeypatch.setenv("GRISTMILL_PII_KEY", KEY)
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(
            f"""CREATE TABLE "{pg_schema}".users (id bigint PRIMARY KEY, email text,
                updated_at timestamptz NOT NULL DEFAULT now());
            INSERT INTO "{pg_schema}".users (id, email) VALUES (1, 'Bob@Example.net'), (2, NULL)"""
        )
    root = tmp_path / "p"
    root.mkdir()
    (root / "gristmill.toml").write_text('name = "t"\n')
    (root / "pipeline.py").write_text(
        "import gristmill as gm\n"
        f'users = gm.database_source("users", url="{PG}", table="{pg_schema}.users", '
        'cursor="updated_at", primary_key="id", pii={"email": "email"})\n'
    )
    ws = Workspace.open(root)
    assert ws.run().ok
    emails = dict(zip(*ws.read("users").select(["id", "email"]).to_pydict().values(), strict=True))
    assert emails == {1: pseudonym("bob@example.net"), 2: None}
    for path in every_file(root / "lake"):
        assert b"Example.net" not in path.read_bytes() and b"bob@" not in path.read_bytes()


def test_the_key_variable_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gristmill.errors import ConfigError

    monkeypatch.delenv("GRISTMILL_PII_KEY", raising=False)
    monkeypatch.setenv("SHOP_PII_KEY", KEY)
    toml = 'name = "t"\n[pii]\nkey_env = "SHOP_PII_KEY"\n'
    root = write_project(tmp_path / "p", module=MODULE, sql={}, data={"a.csv": CSV}, toml=toml)
    ws = Workspace.open(root)
    assert ws.run().ok
    assert ws.read("people")["email"][0].as_py() == pseudonym("alice@example.com")
    (root / "gristmill.toml").write_text('name = "t"\n[pii]\nkey_env = "not a name"\n')
    with pytest.raises(ConfigError, match="key_env"):
        Workspace.open(root).plan()


def test_a_tagged_key_stays_out_of_the_log_when_rows_are_merged_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_schema: str
) -> None:
    """A merge bounds what it reads by its key's range, written into the log with the
    commit: not for a key that is personal data (the log outlives the rows)."""
    import psycopg

    from tests.conftest import PG

    monkeypatch.setenv("GRISTMILL_PII_KEY", KEY)
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(
            f"""CREATE TABLE "{pg_schema}".people (email text PRIMARY KEY, plan text,
                updated_at timestamptz NOT NULL DEFAULT now());
            INSERT INTO "{pg_schema}".people (email, plan)
            SELECT 'p' || g || '@example.org', 'free' FROM generate_series(1, 50) g"""
        )
    root = tmp_path / "p"
    root.mkdir()
    (root / "gristmill.toml").write_text('name = "t"\n')
    (root / "pipeline.py").write_text(
        "import gristmill as gm\n"
        f'people = gm.database_source("people", url="{PG}", table="{pg_schema}.people", '
        'cursor="updated_at", primary_key="email", lag="0s", pii={"email": "email"})\n'
    )
    assert Workspace.open(root).run().ok
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(
            f"""UPDATE "{pg_schema}".people SET plan = 'pro', updated_at = now()
                WHERE email = 'p7@example.org'"""
        )
    ws = Workspace.open(root)
    assert ws.run().ok
    plans = dict(
        zip(*ws.read("people").select(["email", "plan"]).to_pydict().values(), strict=True)
    )
    assert plans[pseudonym("p7@example.org")] == "pro" and len(plans) == 50
    log = b"".join(p.read_bytes() for p in (ws.lake.path("people") / "_delta_log").glob("*.json"))
    assert b'"operation":"MERGE"' in log
    for n in range(1, 51):  # no pseudonym: the rows read again share the watermark
        assert pseudonym(f"p{n}@example.org").encode() not in log
