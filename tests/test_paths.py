"""Projects in folders whose paths have spaces, Unicode and URL-special characters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gristmill.workspace import Workspace
from gristmill.workspace.init import init_project
from tests.conftest import CliResult, write_project

pytestmark = pytest.mark.slow

AWKWARD = "env=prod/my projects ü 日本 #1 100% ?*'(copy)"


def test_the_example_runs_shows_trains_and_serves_from_an_awkward_folder(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    root = tmp_path / AWKWARD / "demo"
    init_project(root, example="churn", scale="tiny", seed=3)
    p = ("--project", str(root))
    run = cli("run", *p, "--json")
    assert run.code == 0, run.stdout + run.stderr
    steps = {s["name"]: s["status"] for s in run.json()["steps"]}
    assert set(steps.values()) == {"success"} and "user_profile" in steps
    shown = cli("show", "user_profile", "--limit", "3", *p, "--json").json()
    assert shown["rows"] > 0 and len(shown["data"]) == 3
    assert "env" not in shown["data"][0]  # env=prod in the path is no Hive partition
    trained = cli("train", "churn", *p, "--json")
    assert trained.code == 0, trained.stdout + trained.stderr
    ws = Workspace.open(root)
    try:
        assert ws.models.version("churn", "latest").version == 2
        ws.models.promote("churn", 2, force=True, reason="tests")
        user = ws.read("user_profile", limit=1)["user_id"][0].as_py()
        answer = ws.services.predict("churn", {"user_id": user})
        assert answer.found and answer.model_version == 2 and 0 < answer.score < 1
    finally:
        ws.close()


def test_a_glob_source_in_a_folder_named_like_a_pattern(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    lake = tmp_path / "lake"
    root = write_project(tmp_path / "[draft] a*", toml=f'name = "t"\nlake = "{lake}"\n')
    result = cli("run", "--project", str(root), "--json")
    assert result.code == 0, result.stdout + result.stderr
    steps = {s["name"]: s for s in result.json()["steps"]}
    assert steps["txns"]["files"] == ["data/a.csv"] and steps["top_users"]["rows"] == 2


@pytest.mark.parametrize("folder", ["a[1]", "50%25 off", "pipe|d"])
def test_a_lake_path_delta_cannot_open_is_a_clear_error(
    tmp_path: Path, cli: Callable[..., CliResult], folder: str
) -> None:
    root = write_project(tmp_path / folder)
    result = cli("run", "--project", str(root))
    assert result.code == 2
    assert "which the Delta Lake library cannot open" in result.stderr
    assert "set `lake` in gristmill.toml" in result.stderr and "Traceback" not in result.stderr
