"""The planner returns data: which steps run or skip, and why."""

import os
from pathlib import Path

from gristmill.planning import Action, WriteMode
from gristmill.workspace import Workspace


def actions(
    ws: Workspace, *selection: str, full_refresh: bool = False
) -> dict[str, tuple[str, str]]:
    plan = ws.plan(selection, full_refresh=full_refresh)
    return {s.name: (s.action.value, s.reason) for s in plan.steps}


def test_first_plan_runs_everything(workspace: Workspace) -> None:
    plan = workspace.plan()
    assert [s.action for s in plan.steps] == [Action.RUN] * 3
    assert plan.step("txns").reason == "never ingested"
    assert [f.path for f in plan.step("txns").files] == ["data/a.csv"]


def test_after_a_run_everything_is_fresh(workspace: Workspace) -> None:
    assert workspace.run().ok
    plan = workspace.plan()
    assert plan.is_noop
    assert actions(workspace)["per_user"] == ("skip", "fresh (v0)")


def test_formatting_and_comments_do_not_make_a_step_stale(
    workspace: Workspace, project: Path
) -> None:
    workspace.run()
    (project / "sql" / "per_user.sql").write_text(
        "-- a comment\nSELECT user_id,   SUM(amount) AS total, COUNT(*) AS n "
        "FROM txns GROUP BY user_id"
    )
    assert Workspace.open(project).plan().is_noop


def test_code_change_reruns_step_and_downstream(workspace: Workspace, project: Path) -> None:
    workspace.run()
    (project / "sql" / "per_user.sql").write_text(
        "select user_id, sum(amount) as total, count(*) as n, max(amount) as top\n"
        "from txns group by user_id\n"
    )
    got = actions(Workspace.open(project))
    assert got["txns"][0] == "skip"
    assert got["per_user"] == ("run", "code changed")
    assert got["top_users"] == ("run", "upstream 'per_user' will change")


def test_new_file_appends_and_changed_file_reingests(workspace: Workspace, project: Path) -> None:
    workspace.run()
    (project / "data" / "b.csv").write_text("id,user_id,amount\n9,u9,1\n")
    plan = Workspace.open(project).plan()
    step = plan.step("txns")
    assert (step.action, step.mode, step.reason) == (Action.RUN, WriteMode.APPEND, "1 new file(s)")
    assert [f.path for f in step.files] == ["data/b.csv"]
    Workspace.open(project).run()
    a = project / "data" / "a.csv"
    a.write_text(a.read_text() + "10,u1,1\n")
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 1_000_000))
    step = Workspace.open(project).plan().step("txns")
    assert step.mode is WriteMode.OVERWRITE
    assert "changed (data/a.csv)" in step.reason
    assert [f.path for f in step.files] == ["data/a.csv", "data/b.csv"]


def test_input_moved_by_a_selected_run(workspace: Workspace, project: Path) -> None:
    workspace.run()
    (project / "data" / "b.csv").write_text("id,user_id,amount\n9,u9,100\n")
    workspace.run(["txns"])  # only the source: per_user now reads an old version
    got = actions(Workspace.open(project))
    assert got["per_user"] == ("run", "inputs changed: txns v0 -> v1")


def test_full_refresh(workspace: Workspace) -> None:
    workspace.run()
    got = actions(workspace, "per_user", full_refresh=True)
    assert got == {"per_user": ("run", "full refresh")}
