"""Every CLI command, its --json form and its errors (run in-process on real projects)."""

import json
import sqlite3
from pathlib import Path

import pytest

from gristmill.workspace import Workspace
from tests.conftest import write_project


def test_run_then_noop(cli, project: Path) -> None:
    first = cli("run", "--project", str(project))
    assert first.code == 0
    assert "success" in first.stdout and "quarantined txns" in first.stdout
    assert "not_null(user_id): 1" in first.stdout
    again = cli("run", "--project", str(project), "--json")
    assert again.code == 0
    doc = again.json()
    assert doc["summary"]["status"] == "noop"
    assert [s["status"] for s in doc["steps"]] == ["skipped"] * 3
    text = cli("run", "--project", str(project))
    assert "nothing to do: all 3 tables are fresh" in text.stdout


def test_run_json_is_one_document(cli, project: Path) -> None:
    result = cli("run", "-p", str(project), "--json")
    doc = result.json()
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["txns"]["files"] == ["data/a.csv"]
    assert steps["txns"]["quarantine_counts"]["unique(id)"] == 1
    assert steps["per_user"]["rows"] == 2


def test_dry_run_shows_the_plan(cli, project: Path) -> None:
    doc = cli("run", "+per_user", "--dry-run", "-p", str(project), "--json").json()
    assert [(s["name"], s["action"], s["reason"]) for s in doc["steps"]] == [
        ("txns", "run", "never ingested"),
        ("per_user", "run", "never built"),
    ]


def test_status_tables_runs(cli, project: Path) -> None:
    before = {r["name"]: r["state"] for r in cli("status", "-p", str(project), "--json").json()}
    assert before == {"txns": "never built", "per_user": "never built", "top_users": "never built"}
    cli("run", "-p", str(project))
    status = cli("status", "-p", str(project), "--json").json()
    assert {r["name"]: (r["state"], r["version"], r["rows"]) for r in status} == {
        "txns": ("fresh", 0, 3),
        "per_user": ("fresh", 0, 2),
        "top_users": ("fresh", 0, 2),
    }
    assert "fresh" in cli("status", "-p", str(project)).stdout
    tables = {t["name"]: t for t in cli("tables", "-p", str(project), "--json").json()}
    assert tables["per_user"]["inputs"] == ["txns"]
    assert [c["name"] for c in tables["per_user"]["columns"]] == ["user_id", "total", "n"]
    runs = cli("runs", "-p", str(project), "--json").json()
    assert runs[0]["status"] == "success" and runs[0]["summary"]["rows_written"] == 7
    detail = cli("runs", runs[0]["run_id"][:8], "-p", str(project), "--json").json()
    assert [s["table"] for s in detail["steps"]] == ["txns", "per_user", "top_users"]
    assert "runs" in cli("runs", "-p", str(project)).stdout


def test_show_history_lineage_quarantine(cli, project: Path) -> None:
    cli("run", "-p", str(project))
    (project / "data" / "b.csv").write_text("id,user_id,amount\n30,u1,100\n")
    cli("run", "-p", str(project))
    shown = cli(
        "show", "per_user", "--version", "0", "--limit", "5", "-p", str(project), "--json"
    ).json()
    assert shown["version"] == 0
    assert sorted((r["user_id"], r["total"]) for r in shown["data"]) == [("u1", 15.0), ("u2", 7.0)]
    table = cli("show", "per_user", "-p", str(project))
    assert "per_user v1" in table.stdout and "115.0" in table.stdout
    history = cli("history", "txns", "-p", str(project), "--json").json()
    assert [(h["version"], h["mode"], h["rows"], h["files"]) for h in history] == [
        (0, "overwrite", 3, ["data/a.csv"]),
        (1, "append", 4, ["data/b.csv"]),
    ]
    assert len(history[1]["fingerprint"]) == 64
    per_user = cli("history", "per_user", "-p", str(project), "--json").json()
    assert [h["inputs"] for h in per_user] == [{"txns": 0}, {"txns": 1}]
    up = cli("lineage", "top_users", "--upstream", "-p", str(project), "--json").json()
    assert (up["name"], up["version"]) == ("top_users", 1)
    assert up["inputs"][0]["inputs"][0]["files"] == ["data/a.csv", "data/b.csv"]
    old = cli("lineage", "per_user", "--version", "0", "-p", str(project), "--json").json()
    assert old["inputs"][0]["version"] == 0 and old["inputs"][0]["files"] == ["data/a.csv"]
    down = cli("lineage", "txns", "--downstream", "-p", str(project), "--json").json()
    assert [n["name"] for n in down["inputs"]] == ["per_user"]
    assert "top_users" in cli("lineage", "txns", "--downstream", "-p", str(project)).stdout
    q = cli("quarantine", "txns", "--version", "0", "-p", str(project), "--json").json()
    assert q["quarantined"] == 4 and len(q["data"]) == 4
    assert (
        "type(amount DOUBLE)"
        in cli("quarantine", "txns", "--version", "0", "-p", str(project)).stdout
    )


def test_init_creates_a_runnable_project(cli, tmp_path: Path) -> None:
    created = cli("init", str(tmp_path / "demo"), "--scale", "tiny", "--json").json()
    assert created["data"] == {"users": 1, "transactions": 9, "events": 9, "labels": 1}
    assert (tmp_path / "demo" / "gristmill.toml").exists()
    again = cli("init", str(tmp_path / "demo"))
    assert again.code != 0 and "is not empty" in again.stderr
    bad = cli("init", str(tmp_path / "other"), "--example", "fraud")
    assert bad.code == 2 and "unknown example 'fraud'" in bad.stderr and "churn" in bad.stderr
    spaced = tmp_path / "my [bold] demo"
    printed = cli("init", str(spaced), "--scale", "tiny")
    assert printed.code == 0 and f"next: cd '{spaced}' && gristmill run" in printed.stdout


def test_an_out_file_that_cannot_be_written_is_a_clear_error(cli, tmp_path: Path) -> None:
    cli("init", str(tmp_path / "demo"), "--scale", "tiny")
    target = tmp_path / "missing" / "report.html"
    result = cli(
        "monitor", "report", "churn", "--out", str(target), "--project", str(tmp_path / "demo")
    )
    assert result.code == 2
    assert f"cannot write {target}: No such file or directory" in result.stderr
    assert "folder that exists" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "no table named 'nope'"),
        (["show", "per_usr"], "did you mean 'per_user'"),
        (["history", "nope"], "no table named 'nope'"),
        (["lineage", "nope"], "no table named 'nope'"),
        (["run", "+nope"], "selection '+nope' names nothing"),
        (["runs", "ffff"], "no run matches 'ffff'"),
    ],
)
def test_unknown_names(cli, project: Path, args: list[str], message: str) -> None:
    result = cli(*args, "-p", str(project))
    assert result.code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_version_and_unbuilt_table(cli, project: Path) -> None:
    unbuilt = cli("show", "per_user", "-p", str(project))
    assert unbuilt.code == 2 and "has not been built yet" in unbuilt.stderr
    cli("run", "-p", str(project))
    bad = cli("show", "per_user", "--version", "9", "-p", str(project), "--json")
    assert bad.code == 2
    assert bad.json() == {
        "error": "VersionNotFoundError",
        "message": "table 'per_user' has no version 9",
        "location": None,
        "hint": "versions: 0",
        "category": "not_found",
        "transient": False,  # trying again would fail the same way
    }
    negative = cli("show", "per_user", "--limit", "-1", "-p", str(project))
    assert negative.code == 2 and "Traceback" not in negative.stderr
    as_json = cli("show", "per_user", "--limit", "-1", "-p", str(project), "--json")
    assert as_json.code == 2 and as_json.json()["category"] == "invalid"  # JSON, not a usage box
    assert "--limit" in as_json.json()["message"] and as_json.stderr == ""


def test_malformed_toml(cli, project: Path) -> None:
    (project / "gristmill.toml").write_text('name = "t"\nlake = [\n')
    result = cli("status", "-p", str(project))
    assert result.code == 2
    assert "gristmill.toml:" in result.stderr and "malformed TOML" in result.stderr


def test_no_project_here(cli, tmp_path: Path) -> None:
    result = cli("status", "-p", str(tmp_path))
    assert result.code == 2 and "no gristmill.toml" in result.stderr
    assert "gristmill init" in result.stderr


def test_sql_error_exit_code_and_location(cli, tmp_path: Path) -> None:
    root = write_project(tmp_path, sql={"per_user.sql": "select user_id,\n  total\nfrom txns\n"})
    result = cli("run", "-p", str(root))
    assert result.code == 1
    assert "per_user.sql:2" in result.stderr
    assert 'Referenced column "total" not found' in result.stderr
    doc = cli("run", "-p", str(root), "--json")
    assert doc.code == 1
    lines = doc.stdout.strip()
    steps = json.loads(lines)["steps"]
    assert steps[1]["error"]["location"].endswith("per_user.sql:2")


def test_unreadable_file(cli, tmp_path: Path) -> None:
    root = write_project(tmp_path, data={"a.csv": "id,user_id,amount\n1,u1,1\n"})
    (root / "data" / "b.csv").write_bytes(b"\x00\x01garbage\xff\n\x00")
    result = cli("run", "-p", str(root))
    assert result.code == 1
    assert "data/b.csv" in result.stderr
    assert "Traceback" not in result.stderr


def _clear(result, code: int = 2) -> None:
    """Exit ``code`` with our message: no internal error, no traceback."""
    assert result.code == code, result.stdout + result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_a_memory_limit_that_is_not_a_size_is_refused_at_load(cli, tmp_path: Path) -> None:
    toml = 'name = "t"\n\n[duckdb]\nthreads = 1\nmemory_limit = "lots"\n'
    root = write_project(tmp_path / "p", toml=toml)
    result = cli("run", "-p", str(root))
    _clear(result)
    assert f"{root / 'gristmill.toml'}:5: invalid value for 'duckdb.memory_limit'" in result.stderr
    assert "'lots' is not a size" in result.stderr and "8GB" in result.stderr


def test_numbers_too_large_for_the_catalog_are_usage_errors(cli, project: Path) -> None:
    cli("run", "-p", str(project))
    huge = "99999999999999999999999"
    version = cli("show", "txns", "--version", huge, "-p", str(project))
    _clear(version)
    assert (
        f"table 'txns' has no version {huge}" in version.stderr and "versions: 0" in version.stderr
    )
    for args in (["show", "txns", "--limit", huge], ["runs", "--limit", huge]):
        _clear(cli(*args, "-p", str(project)))
    assert cli("lineage", "txns", "--version", huge, "-p", str(project)).code == 2
    largest = cli("show", "txns", "--limit", str(2**63 - 1), "-p", str(project), "--json")
    assert largest.code == 0 and largest.json()["rows"] == len(largest.json()["data"])
    bad_init = cli("init", "/proc/no-such-place/demo", "--scale", "tiny")
    assert bad_init.code == 2 and "cannot create a project in /proc/no-such-place" in (
        bad_init.stderr
    )


def test_a_catalog_that_is_not_a_database(cli, project: Path) -> None:
    ws = Workspace.open(project)
    assert ws.run().ok
    ws.close()
    catalog = project / ".gristmill" / "catalog.db"
    for journal in project.glob(".gristmill/catalog.db-*"):
        journal.unlink()
    catalog.write_bytes(b"these are not the bytes of a SQLite database" * 100)
    result = cli("status", "-p", str(project))
    _clear(result)
    assert f"the catalog {catalog} is not a SQLite database" in result.stderr
    assert "move it aside and run `gristmill run`" in result.stderr
    # what the hint promises: a new catalog adopts the versions in the lake
    catalog.rename(project / "catalog.broken")
    again = cli("run", "-p", str(project), "--json").json()
    assert again["summary"]["status"] == "noop"
    assert ["per_user", 0] in again["summary"]["recovered_versions"]


def test_an_emptied_catalog_or_a_dropped_catalog_table(cli, project: Path) -> None:
    ws = Workspace.open(project)
    assert ws.run().ok
    ws.close()
    catalog = project / ".gristmill" / "catalog.db"
    with sqlite3.connect(catalog) as conn:
        conn.execute("DROP TABLE runs")
    dropped = cli("runs", "-p", str(project))
    _clear(dropped)
    assert dropped.code == 2 and "the catalog cannot answer: no such table: runs" in (
        dropped.stderr
    )
    as_json = cli("runs", "-p", str(project), "--json")
    assert as_json.code == 2 and "no such table: runs" in as_json.json()["message"]
    for journal in project.glob(".gristmill/catalog.db-*"):
        journal.unlink()
    catalog.write_bytes(b"")
    emptied = cli("status", "-p", str(project))
    _clear(emptied)
    assert emptied.code == 2 and f"the catalog {catalog} is an empty file" in emptied.stderr
    assert catalog.stat().st_size == 0  # not silently replaced by a new, empty catalog


def test_a_table_whose_data_files_were_deleted(cli, project: Path) -> None:
    cli("run", "-p", str(project))
    for part in (project / "lake" / "per_user").glob("*.parquet"):
        part.unlink()
    shown = cli("show", "per_user", "-p", str(project))
    _clear(shown)
    assert "table 'per_user' version 0 is missing 1 of its 1 data file(s)" in shown.stderr
    assert "gristmill run per_user --full-refresh" in shown.stderr
    downstream = cli("run", "top_users", "--full-refresh", "-p", str(project), "--json")
    assert downstream.code == 1
    (step,) = downstream.json()["steps"]
    assert step["error"]["message"].startswith("table 'per_user' version 0 is missing")
    assert cli("run", "per_user", "--full-refresh", "-p", str(project)).code == 0
    assert cli("show", "per_user", "-p", str(project), "--json").json()["version"] == 1


def test_init_into_a_non_empty_folder_or_a_file_is_bad_input(cli, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    full = cli("init", str(tmp_path / "full"), "--scale", "tiny")
    _clear(full)
    assert "the folder is not empty" in full.stderr
    _clear(cli("init", str(tmp_path / "file"), "--scale", "tiny"))
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_project_option_must_name_a_folder(cli, project: Path) -> None:
    file = cli("status", "-p", str(project / "pipeline.py"))
    _clear(file)
    assert f"the project folder {project / 'pipeline.py'} is a file" in file.stderr
    missing = cli("status", "-p", str(project / "typo"), "--json")
    _clear(missing)
    assert missing.json()["message"].endswith("typo does not exist")
    assert cli("status", "-p", str(project / "sql")).code == 0  # a folder inside it still works


def test_a_monitor_line_prints_brackets_in_its_messages_as_written() -> None:
    """Messages carry config sections ([spark]) and feature names: not read as markup."""
    from gristmill.cli.render import evaluation_line, out

    evaluation = {
        "monitor": "m",
        "type": "drift",
        "state": "error",
        "error": 'use a local Spark master ([spark] master = "local[4]")',
        "skipped": "",
        "rows": 0,
        "findings": 0,
        "alerts": ["[bold]x[/bold] psi = 0.5"],
        "action": None,
        "action_details": {},
        "engine": "spark",
        "engine_reason": "project engine = spark [red]",
    }
    with out.capture() as shown:
        evaluation_line(evaluation)
    text = shown.get()
    assert '([spark] master = "local[4]")' in text, text
    assert "[bold]x[/bold] psi" in text and "(on spark: project engine = spark [red])" in text
