"""The churn example end to end, with its features checked against plain Python."""

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gristmill.examples.churn.generator import generate
from gristmill.execution.reporter import StepStatus
from gristmill.workspace import Workspace
from gristmill.workspace.init import init_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("example") / "demo"
    init_project(root, example="churn", scale="tiny", seed=3)
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    ws.outcome = outcome  # type: ignore[attr-defined]
    return ws


def test_builds_every_table_and_quarantines_dirty_rows(demo: Workspace) -> None:
    steps = {s.name: s for s in demo.outcome.result.steps}  # type: ignore[attr-defined]
    assert set(steps) == {
        "users",
        "transactions",
        "events",
        "churn_labels",
        "user_profile",
        "merchant_category_stats",
        "churn_rate_by_month",
        "churn_training",
        "churn",
    }
    assert all(s.status is StepStatus.SUCCESS for s in steps.values())
    txns = steps["transactions"]
    assert len(txns.files) == 9
    assert {
        "unique(txn_id)",
        "range(0 <= amount)",
        "type(amount DOUBLE)",
        "not_null(user_id)",
    } <= set(txns.quarantine_counts)
    assert 0 < txns.quarantined < 0.05 * (txns.rows + txns.quarantined)
    assert steps["events"].quarantine_counts.get("accepted_values(event_type)", 0) > 0


def test_rerun_does_nothing(demo: Workspace) -> None:
    again = Workspace.open(demo.root).run()
    assert again.result.status == "noop"


def test_user_profile_is_unique_per_entity_and_time(demo: Workspace) -> None:
    profile = demo.read("user_profile")
    keys = list(zip(profile["user_id"].to_pylist(), profile["as_of"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) > 0
    info = {t.name: t for t in demo.tables()}["user_profile"]
    assert info.feature_view == {"entity": ["user_id"], "timestamp": "as_of"}


def test_features_equal_a_plain_python_computation(demo: Workspace) -> None:
    txns = demo.read("transactions").to_pylist()
    profile = demo.read("user_profile").to_pylist()
    by_user: dict[str, list[dict]] = {}
    for t in txns:
        by_user.setdefault(t["user_id"], []).append(t)
    checked = 0
    for row in profile[:: max(1, len(profile) // 300)]:
        as_of: datetime = row["as_of"]
        mine = [t for t in by_user.get(row["user_id"], []) if t["ts"] < as_of]
        window = [t for t in mine if t["ts"] >= as_of - timedelta(days=90)]
        last30 = [t for t in mine if t["ts"] >= as_of - timedelta(days=30)]
        assert row["txn_count_90d"] == len(window)
        assert row["txn_count_30d"] == len(last30)
        assert row["amount_sum_90d"] == pytest.approx(sum(t["amount"] for t in window))
        assert row["category_diversity_90d"] == len({t["merchant_category"] for t in window})
        expected_recency = (as_of - max(t["ts"] for t in mine)).days if mine else None
        assert row["days_since_last_txn"] == expected_recency
        checked += 1
    assert checked >= 100


def test_new_month_file_is_appended_alone(demo: Workspace, tmp_path: Path) -> None:
    root = demo.root
    extra = root / "data" / "transactions" / "transactions_2026_07.csv"
    extra.write_text(
        "txn_id,user_id,ts,amount,merchant_category,channel\n"
        "t_new_1,u_0000001,2026-07-02 10:00:00,12.5,grocery,web\n"
    )
    outcome = Workspace.open(root).run()
    steps = {s.name: s for s in outcome.result.steps}
    assert steps["transactions"].files == ("data/transactions/transactions_2026_07.csv",)
    assert (steps["transactions"].mode, steps["transactions"].rows_added) == ("append", 1)
    assert steps["users"].status is StepStatus.SKIPPED
    assert steps["user_profile"].status is StepStatus.SUCCESS
    assert steps["churn_rate_by_month"].status is StepStatus.SKIPPED


def test_generator_is_seeded(tmp_path: Path) -> None:
    def digest(folder: Path) -> str:
        h = hashlib.sha256()
        for path in sorted(folder.rglob("*.csv")) + sorted(folder.rglob("*.jsonl")):
            h.update(path.read_bytes())
        return h.hexdigest()

    generate(tmp_path / "a", "tiny", seed=5)
    generate(tmp_path / "b", "tiny", seed=5)
    generate(tmp_path / "c", "tiny", seed=6)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def _table_digests(ws: Workspace) -> dict[str, str]:
    """SHA-256 of every lake table's latest version: its rows sorted (a table is a set of
    rows; parallel steps write them in any order), every column's bytes. ``_run_id`` (in
    quarantine tables) names the run that wrote a row, so it differs by design."""
    import pyarrow as pa

    digests = {}
    for folder in sorted((ws.root / "lake").iterdir()):
        data = ws.lake.read(folder.name, ws.lake.latest_version(folder.name))
        data = data.drop_columns([c for c in data.column_names if c == "_run_id"])
        keys = [f.name for f in data.schema if not pa.types.is_nested(f.type)]
        data = data.sort_by([(c, "ascending") for c in keys]).combine_chunks()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        digests[folder.name] = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    return digests


def test_two_clean_builds_are_bit_identical(tmp_path: Path) -> None:
    builds = []
    for name in ("a", "b"):
        init_project(tmp_path / name, example="churn", scale="small", seed=3)
        ws = Workspace.open(tmp_path / name)
        assert ws.run().ok
        builds.append(ws)
    first, second = (_table_digests(ws) for ws in builds)
    assert len(first) == 11 and {"user_profile", "churn_training"} <= set(first)
    assert {t for t in first if first[t] != second[t]} == set()
    one, two = (ws.models.version("churn", 1) for ws in builds)
    assert (one.artifact_digest, one.manifest_digest) == (two.artifact_digest, two.manifest_digest)
    assert one.metrics == two.metrics
    for ws in builds:
        ws.close()
