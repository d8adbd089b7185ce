"""`gristmill erase`: a person's rows out of every table, across history, checked on disk."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gristmill.errors import VersionNotFoundError
from gristmill.workspace import Workspace
from tests.conftest import gm, gm_json

KEY = "erasure-test-key-" + "x" * 20
SUBJECT = "u_0042"


def write_users(root: Path, extra: str = "") -> None:
    lines = ["user_id,email,plan"]
    lines += [f"u_{i:04d},User{i}@Example.com,{'pro' if i % 2 else 'free'}" for i in range(60)]
    (root / "data" / "users.csv").write_text("\n".join(lines) + "\n" + extra)


def project(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "sql").mkdir()
    (root / "gristmill.toml").write_text('name = "erase"\n[pii]\nkey_env = "GM_ERASE_KEY"\n')
    write_users(root)
    rows = ["txn_id,user_id,amount,ts"]
    rows += [f"{i},u_{i % 60:04d},{i * 1.5},2026-01-{1 + i % 28:02d}" for i in range(300)]
    rows += [f"900,{SUBJECT},not-a-number,2026-01-05"]  # quarantined with the subject's id
    (root / "data" / "txns.csv").write_text("\n".join(rows) + "\n")
    (root / "pipeline.py").write_text(
        textwrap.dedent(
            """
            import gristmill as gm

            users = gm.source("users", "data/users.csv",
                columns={"user_id": "VARCHAR", "email": "VARCHAR", "plan": "VARCHAR"},
                pii={"email": "email"})
            txns = gm.source("txns", "data/txns.csv",
                columns={"txn_id": "BIGINT", "user_id": "VARCHAR", "amount": "DOUBLE",
                         "ts": "TIMESTAMP"})
            profile = gm.feature_view("profile", entity="user_id", timestamp="ts", sql='''
                select t.user_id, max(t.ts) as ts, count(*) as txns, sum(t.amount) as spent,
                       any_value(u.email) as email
                from txns t join users u using (user_id) group by t.user_id
            ''')
            """
        )
    )
    return root


@pytest.fixture
def key() -> object:
    os.environ["GM_ERASE_KEY"] = KEY
    yield
    del os.environ["GM_ERASE_KEY"]


def every_value(folder: Path, column: str) -> set[str]:
    """Every value of ``column`` in every Parquet file under ``folder``, read on its own."""
    seen: set[str] = set()
    for path in folder.rglob("*.parquet"):
        table = pq.read_table(path)
        if column in table.column_names:
            seen.update(str(v) for v in table[column].cast(pa.string()).to_pylist())
    return seen


def log_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("_delta_log/*.json"))


def test_erase_removes_the_subject_everywhere_across_history_and_verifies_it(
    tmp_path: Path, key: object
) -> None:
    root = project(tmp_path / "p")
    ws = Workspace.open(root)
    assert ws.run().ok
    # a second version of users (a new file), so history holds the subject twice
    write_users(root, "u_0100,late@example.com,free\n")
    assert Workspace.open(root).run().ok
    ws = Workspace.open(root)
    pseudonym = next(r["email"] for r in ws.read("users").to_pylist() if r["user_id"] == SUBJECT)
    before = {t: ws.read(t).num_rows for t in ("users", "txns", "profile")}
    assert ws.lookup("profile", [SUBJECT])[0] is not None
    assert SUBJECT in every_value(ws.lake.root, "user_id")
    assert SUBJECT in set(ws.quarantine("txns")["user_id"].to_pylist())

    done = gm_json(root, "erase", "--subject", f"user_id={SUBJECT}", "--yes")

    assert done["verified"] is True and done["remaining"] == []
    erased = {t["table"]: t["rows"] for t in done["tables"]}
    assert erased == {"users": 1, "txns": 5, "profile": 1, "txns__quarantine": 1}, erased
    ws = Workspace.open(root)
    for table, rows in before.items():
        assert ws.read(table).num_rows == rows - erased[table]
        assert SUBJECT not in ws.read(table)["user_id"].to_pylist()
    assert "u_0041" in ws.read("users")["user_id"].to_pylist()  # others stay
    # on disk, read independently of gristmill: no data file, referenced or not, and no
    # log entry holds the subject (or the pseudonym of the subject's e-mail)
    assert SUBJECT not in every_value(ws.lake.root, "user_id")
    assert pseudonym not in every_value(ws.lake.root, "email")
    assert SUBJECT not in log_text(ws.lake.root)
    # history before the erasure is gone, and says so
    with pytest.raises(VersionNotFoundError):
        ws.read("users", 0)
    assert ws.lookup("profile", [SUBJECT]) == [None]
    assert ws.lookup("profile", ["u_0041"])[0] is not None
    # the trail keeps a keyed digest, never the subject
    [trail] = gm_json(root, "erasures")
    assert trail["column_name"] == "user_id" and len(trail["subject"]) == 64
    assert trail["details"]["retention_hours"] == 0 and trail["details"]["verified"] is True
    catalog = b"".join(p.read_bytes() for p in (root / ".gristmill").glob("catalog.db*"))
    assert SUBJECT.encode() not in catalog
    # nothing to rebuild: the erased versions are recorded like any other
    again = Workspace.open(root).run()
    assert again.ok
    assert all(s.status.value == "skipped" for s in again.result.steps if s.name != "profile")


def test_erase_by_a_pseudonymized_column_matches_its_pseudonym(tmp_path: Path, key: object) -> None:
    root = project(tmp_path / "p")
    assert Workspace.open(root).run().ok
    done = gm_json(root, "erase", "--subject", "email=user7@example.com", "--yes")
    assert {t["table"]: t["rows"] for t in done["tables"]} == {"users": 1, "profile": 1}
    assert "u_0007" not in Workspace.open(root).read("users")["user_id"].to_pylist()


def test_erase_refuses_bad_subjects_and_asks_before_it_acts(tmp_path: Path, key: object) -> None:
    root = project(tmp_path / "p")
    assert Workspace.open(root).run().ok
    for subject in ("user_id", "=42", "user id=4", "user_id="):
        proc = gm(root, "erase", "--subject", subject, "--yes")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "is not COLUMN=VALUE" in proc.stderr and "Traceback" not in proc.stderr
    proc = gm(root, "erase", "--subject", f"user_id={SUBJECT}")  # no terminal, no --yes
    assert proc.returncode == 2 and "add --yes" in proc.stderr
    assert SUBJECT in Workspace.open(root).read("users")["user_id"].to_pylist()
    nobody = gm_json(root, "erase", "--subject", "user_id=u_9999", "--yes")
    assert nobody["tables"] == [] and nobody["verified"] is True
    assert json.loads(gm(root, "erasures", "--json").stdout)[0]["details"]["tables"] == []


def test_erase_refuses_a_column_no_table_has_and_matches_case_and_spaces(
    tmp_path: Path, key: object
) -> None:
    root = project(tmp_path / "p")
    assert Workspace.open(root).run().ok
    proc = gm(root, "erase", "--subject", "nope=1", "--yes")
    assert proc.returncode == 2 and "no table has a column 'nope'" in proc.stderr
    assert gm_json(root, "erasures") == []
    done = gm_json(root, "erase", "--subject", f" USER_ID = {SUBJECT} ", "--yes")
    assert done["column"] == "user_id" and {t["table"] for t in done["tables"]} >= {"users"}
