"""Point-in-time training sets on real DuckDB and Delta tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.errors import DefinitionError
from gristmill.workspace import Workspace
from tests.conftest import write_project

MODULE = """
import gristmill as gm

labels = gm.source(
    "labels", "data/labels.csv",
    columns={"user_id": "VARCHAR", "label_ts": "TIMESTAMP", "y": "INTEGER"},
)
raw_profile = gm.source(
    "raw_profile", "data/profile.csv",
    columns={"user_id": "VARCHAR", "ts": "TIMESTAMP", "spend": "DOUBLE", "plan": "VARCHAR"},
)
raw_activity = gm.source(
    "raw_activity", "data/activity.csv",
    columns={"user_id": "VARCHAR", "day": "TIMESTAMP", "logins": "INTEGER"},
)
profile = gm.feature_view("profile", entity="user_id", timestamp="ts",
                          sql="select * from raw_profile")
activity = gm.feature_view("activity", entity="user_id", timestamp="day",
                           sql="select * from raw_activity")

training = gm.training_set(
    "training",
    labels="labels", entity="user_id", timestamp="label_ts", label="y",
    features=[gm.features("profile"), gm.features("activity", ttl="10d")],
)
"""

LABELS = """user_id,label_ts,y
u1,2026-03-01 00:00:00,1
u1,2026-04-01 00:00:00,0
u2,2026-03-01 00:00:00,0
u3,2026-03-01 00:00:00,1
"""
# spend 999 only ever appears after a label's time: it must never reach the training set.
PROFILE = """user_id,ts,spend,plan
u1,2026-01-15 00:00:00,10,free
u1,2026-03-01 00:00:00,20,basic
u1,2026-03-01 00:00:01,999,premium
u1,2026-04-02 00:00:00,999,premium
u2,2026-02-01 00:00:00,5,free
u2,2026-03-05 00:00:00,999,premium
"""
ACTIVITY = """user_id,day,logins
u1,2026-02-25 00:00:00,3
u1,2026-03-10 00:00:00,999
u1,2026-03-30 00:00:00,7
u2,2026-01-01 00:00:00,4
"""


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = write_project(
        tmp_path / "p",
        module=MODULE,
        sql={},
        data={"labels.csv": LABELS, "profile.csv": PROFILE, "activity.csv": ACTIVITY},
    )
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    yield ws
    ws.close()


def _rows(ws: Workspace) -> dict[tuple[str, str], dict[str, object]]:
    data = ws.read("training").to_pylist()
    return {(r["user_id"], r["label_ts"].strftime("%Y-%m-%d")): r for r in data}


def test_each_label_gets_the_latest_features_at_or_before_its_time(ws: Workspace) -> None:
    rows = _rows(ws)
    assert set(rows) == {
        ("u1", "2026-03-01"),
        ("u1", "2026-04-01"),
        ("u2", "2026-03-01"),
        ("u3", "2026-03-01"),
    }
    # a feature row stamped exactly at the label time is known then; one a second later is not
    assert (rows["u1", "2026-03-01"]["spend"], rows["u1", "2026-03-01"]["plan"]) == (20.0, "basic")
    assert rows["u1", "2026-04-01"]["spend"] == 999.0  # the 00:00:01 row, before April
    assert rows["u2", "2026-03-01"]["spend"] == 5.0
    assert all(r["logins"] != 999 for r in rows.values() if r["label_ts"].month == 3)


def test_no_feature_row_is_newer_than_its_label(ws: Workspace) -> None:
    for row in ws.read("training").to_pylist():
        for column in ("profile__ts", "activity__day"):
            if row[column] is not None:
                assert row[column] <= row["label_ts"]


def test_labels_without_features_are_kept_with_nulls_and_counted(ws: Workspace) -> None:
    rows = _rows(ws)
    assert rows["u3", "2026-03-01"]["spend"] is None  # u3 has no profile at all
    assert rows["u3", "2026-03-01"]["y"] == 1
    # ttl 10d: u2's activity is from January, too old for March
    assert rows["u2", "2026-03-01"]["logins"] is None
    assert rows["u1", "2026-03-01"]["logins"] == 3  # 4 days old
    assert rows["u1", "2026-04-01"]["logins"] == 7  # 2 days old; the 999 row is older
    m = ws.materialization("training")
    assert m.rows == 4
    assert m.stats["labels"] == 4
    assert m.stats["missing"] == {"profile": 1, "activity": 2}
    assert m.stats["features"] == ["spend", "plan", "logins"]


def test_history_json_shows_the_missing_counts_as_the_docs_say(ws: Workspace, cli) -> None:
    (entry,) = cli("history", "training", "--json", "--project", str(ws.root)).json()
    assert entry["stats"]["missing"] == {"profile": 1, "activity": 2}
    assert entry["stats"]["labels"] == 4
    assert (
        "`gristmill history churn_training --json`, `stats.missing`"
        in (Path(__file__).parents[2] / "docs" / "models.md").read_text()
    )


def test_a_changed_feature_view_rebuilds_the_training_set(ws: Workspace) -> None:
    (ws.root / "data" / "profile.csv").write_text(
        PROFILE.replace("u2,2026-02-01 00:00:00,5", "u2,2026-02-01 00:00:00,6")
    )
    steps = {s.name: s for s in ws.plan().steps}
    assert steps["training"].action.value == "run"
    outcome = ws.run()
    assert outcome.ok
    assert _rows(ws)["u2", "2026-03-01"]["spend"] == 6.0
    assert ws.materialization("training").version == 1


def test_a_training_set_needs_feature_views(tmp_path: Path) -> None:
    module = MODULE.replace('gm.features("profile")', 'gm.features("raw_profile")')
    root = write_project(tmp_path / "p", module=module, sql={}, data={})
    with pytest.raises(DefinitionError, match="'raw_profile' is not a feature view"):
        Workspace.open(root)


def test_clashing_feature_columns_fail_with_a_hint(tmp_path: Path) -> None:
    module = MODULE.replace('gm.features("activity", ttl="10d")', 'gm.features("profile")')
    root = write_project(
        tmp_path / "p",
        module=module,
        sql={},
        data={"labels.csv": LABELS, "profile.csv": PROFILE, "activity.csv": ACTIVITY},
    )
    ws = Workspace.open(root)
    outcome = ws.run()
    failed = {s.name: s for s in outcome.result.steps}["training"]
    assert failed.status.value == "failed"
    assert "clashes" in failed.error["message"] and "prefix" in failed.error["hint"]
    ws.close()
