"""Training, evaluation, registry and batch scoring on the churn example (tiny scale)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from sklearn import metrics as skm

from gristmill.access import Principal, acting_as
from gristmill.errors import ArtifactError, Forbidden, GateRefused, ScoringError
from gristmill.execution.ml.train import time_cutoff
from gristmill.workspace import Workspace
from tests.conftest import CliResult, built_example

pytestmark = pytest.mark.slow

EXTRA_MODELS = """

from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

churn_strict = gm.model(
    "churn_strict", training_set="churn_training",
    estimator=gm.lightgbm(n_estimators=20), gates=["roc_auc >= 0.99"],
)
churn_relative = gm.model(
    "churn_relative", training_set="churn_training",
    estimator=gm.lightgbm(n_estimators=20), gates=["roc_auc >= champion.roc_auc + 0.001"],
)
churn_skewed = gm.model(
    "churn_skewed", training_set="churn_training",
    estimator=gm.lightgbm(n_estimators=20), split=gm.time_split(0.05),
)
churn_xgb = gm.model(
    "churn_xgb", training_set="churn_training", bootstrap=20,
    estimator=gm.xgboost(n_estimators=30, max_depth=3),
)
churn_linear = gm.model(
    "churn_linear", training_set="churn_training", split=gm.kfold(3), bootstrap=50,
    estimator=gm.sklearn(make_pipeline(
        ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(), StandardScaler()),
             make_column_selector(dtype_include="number")),
            ("cat", OneHotEncoder(handle_unknown="ignore"),
             make_column_selector(dtype_include=object)),
        ]),
        LogisticRegression(max_iter=500),
    )),
)
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("models") / "demo"
    ws = built_example(root, scale="small", seed=3, append=EXTRA_MODELS, promote=False)
    yield ws
    ws.close()


def _test_rows(ws: Workspace, name: str) -> tuple[object, np.ndarray]:
    version = ws.models.version(name, 1)
    cutoff = datetime.fromisoformat(version.details["split"]["cutoff"])
    data = ws.read("churn_training", version.training_set_version)
    test = data.filter(pc.greater_equal(data["label_ts"], cutoff))
    return test, test["churned"].to_numpy()


def test_metrics_equal_scikit_learn_on_the_same_predictions(ws: Workspace) -> None:
    v1 = ws.models.version("churn", 1)
    test, y = _test_rows(ws, "churn")
    assert len(y) == v1.details["split"]["test_rows"]
    scores = ws.models.load("churn", 1).predict(test)
    t = v1.details["threshold"]
    expected = {
        "roc_auc": skm.roc_auc_score(y, scores),
        "pr_auc": skm.average_precision_score(y, scores),
        "log_loss": skm.log_loss(y, scores),
        "brier": skm.brier_score_loss(y, scores),
        "precision": skm.precision_score(y, scores >= t),
        "recall": skm.recall_score(y, scores >= t),
        "f1": skm.f1_score(y, scores >= t),
    }
    for name, value in expected.items():
        assert v1.metrics[name]["value"] == pytest.approx(value, abs=1e-12), name
        assert v1.metrics[name]["low"] <= v1.metrics[name]["high"]
    assert (
        v1.metrics["roc_auc"]["low"]
        < v1.metrics["roc_auc"]["value"]
        < v1.metrics["roc_auc"]["high"]
    )
    baseline = v1.details["baseline"]
    assert baseline["metrics"]["roc_auc"] == 0.5
    assert baseline["metrics"]["brier"] == pytest.approx(
        skm.brier_score_loss(y, np.full(len(y), baseline["value"]))
    )


def test_a_time_split_trains_on_the_past_and_tests_on_the_future(ws: Workspace) -> None:
    split = ws.models.version("churn", 1).details["split"]
    assert split["kind"] == "time"
    data = ws.read("churn_training")
    cutoff = datetime.fromisoformat(split["cutoff"])
    before = pc.sum(pc.less(data["label_ts"], cutoff)).as_py()
    assert split["train_rows"] == before
    assert split["train_rows"] + split["test_rows"] == data.num_rows
    assert split["train_until"].split(" .. ")[1] < split["cutoff"]
    # of the cutoffs that split no label date, the test share nearest the 25% asked for
    dates = sorted(set(data["label_ts"].to_pylist()))
    shares = {
        d: pc.sum(pc.greater_equal(data["label_ts"], d)).as_py() / data.num_rows for d in dates[1:]
    }
    nearest = min(shares, key=lambda d: abs(shares[d] - 0.25))
    assert cutoff == nearest and split["test_share"] == shares[nearest]
    assert split["test_rows"] / data.num_rows == split["test_share"]
    assert split["train_rows"] / data.num_rows == split["train_share"]
    assert abs(split["test_share"] - 0.25) < 0.10 and "warning" not in split


def test_time_cutoff_never_splits_a_time_and_takes_the_nearest_share() -> None:
    days = np.array([1] * 27 + [2] * 27 + [3] * 25 + [4] * 21)
    assert time_cutoff(days, 0.25) == 4  # 21% of rows, not 46% (every row tied at 3 too)
    assert time_cutoff(days, 0.40) == 3  # 46%, nearer than 21%
    assert time_cutoff(days, 0.99) == 2  # the train set is never empty
    assert time_cutoff(np.array([5, 5, 5]), 0.25) is None


def test_a_skewed_time_split_warns_and_shows_its_shares(
    ws: Workspace, cli: Callable[..., CliResult]
) -> None:
    split = ws.models.version("churn_skewed", 1).details["split"]
    assert split["test_fraction"] == 0.05 and split["test_share"] > 0.15
    assert split["warning"].startswith(
        f"the test set holds {split['test_share']:.1%} of the rows, not the 5% asked for"
    )
    outcome = ws.models.train("churn_skewed")
    (step,) = [s for s in outcome.result.steps if s.name == "churn_skewed"]
    assert step.warnings == (split["warning"],)
    p = ("--project", str(ws.root))
    shown = cli("models", "show", "churn_skewed", "1", *p)
    assert f"({split['test_share']:.1%} of rows; 5% asked)" in shown.stdout
    assert "warning:" in shown.stdout and "asked for" in shown.stdout
    assert cli("models", "show", "churn_skewed", "1", "--json", *p).json()["split"] == split
    card = cli("models", "card", "churn_skewed", "1", *p).stdout
    assert f"{split['test_share']:.1%} of the rows (5% asked)" in card and "Warning:" in card
    trained = cli("train", "churn_skewed", *p)
    assert "warning in churn_skewed: the test set holds" in trained.stderr


def test_training_twice_gives_the_same_digest_and_metrics(ws: Workspace) -> None:
    for name in ("churn", "churn_linear", "churn_xgb"):
        outcome = ws.models.train(name)
        assert outcome.ok
        first, again = ws.models.version(name, 1), ws.models.version(name, "latest")
        assert again.version == first.version + 1
        assert again.artifact_digest == first.artifact_digest
        assert again.manifest_digest == first.manifest_digest
        assert again.metrics == first.metrics


def test_a_scikit_learn_pipeline_round_trips_through_skops(ws: Workspace) -> None:
    v = ws.models.version("churn_linear", 1)
    assert v.details["artifact"]["format"] == "skops"
    assert v.details["split"] == {
        "kind": "kfold",
        "folds": 3,
        "train_rows": ws.materialization("churn_training").rows,
        "test_rows": ws.materialization("churn_training").rows,
    }
    loaded = ws.models.load("churn_linear", 1)
    rows = ws.read("churn_training", limit=50)
    scores = loaded.predict(rows)
    assert scores.shape == (50,) and ((scores > 0) & (scores < 1)).all()
    assert 0.5 < v.metrics["roc_auc"]["value"] < 1


def test_a_failing_gate_refuses_the_promotion_and_force_records_an_override(
    ws: Workspace,
) -> None:
    with pytest.raises(GateRefused, match=r"roc_auc >= 0.99"):
        ws.models.promote("churn_strict", 1, alias="champion")
    assert ws.catalog.aliases("churn_strict") == {}
    with pytest.raises(GateRefused, match="--force needs --reason"):
        ws.models.promote("churn_strict", 1, force=True)
    ana = Principal("user:ana", "admin")
    with acting_as(Principal("user:eng", "engineer")), pytest.raises(Forbidden, match="override"):
        ws.models.promote("churn_strict", 1, force=True, reason="demo")
    with acting_as(ana):
        done = ws.models.promote("churn_strict", 1, force=True, reason="demo")
    assert done.action == "override"
    assert ws.catalog.aliases("churn_strict") == {"champion": 1}
    (event,) = ws.models.events("churn_strict")
    assert (event.action, event.actor, event.reason, event.version) == (
        "override",
        "user:ana",
        "demo",
        1,
    )
    assert event.gates[0]["passed"] is False and event.gates[0]["bound"] == 0.99


def test_gates_compare_with_the_champion_and_rollback_is_recorded(ws: Workspace) -> None:
    first = ws.models.promote("churn_relative", 1, reason="first")
    assert first.action == "promote"
    assert "no champion yet" in first.gates[0]["detail"]
    assert ws.models.train("churn_relative").ok
    # v2 equals v1, so it is not better than the champion by 0.001
    with pytest.raises(GateRefused, match="champion.roc_auc"):
        ws.models.promote("churn_relative", 2)
    with acting_as(Principal("key:0b0b0b0b", "admin")):
        ws.models.promote("churn_relative", 2, force=True, reason="hotfix")
        back = ws.models.rollback("churn_relative", reason="bad deploy")
    assert (back.action, back.version, back.previous_version) == ("rollback", 1, 2)
    assert back.actor == "key:0b0b0b0b"
    actions = [(e.action, e.version) for e in ws.models.events("churn_relative")]
    assert actions == [("promote", 1), ("override", 2), ("rollback", 1)]


def test_a_tampered_artifact_is_refused(ws: Workspace, cli: Callable[..., CliResult]) -> None:
    v = ws.models.version("churn_strict", 1)
    path = Path(ws.artifacts.path(v.artifact_digest))
    original = path.read_bytes()
    aliases = ws.catalog.aliases("churn_strict")
    try:
        path.write_bytes(original.replace(b"learning_rate", b"learning_rat3", 1))
        with pytest.raises(ArtifactError, match="changed on disk"):
            ws.models.load("churn_strict", 1)
        result = cli("score", "churn_strict", "--table", "user_profile", "--project", str(ws.root))
        assert result.code == 1
        assert "refusing to load" in result.stderr and "Traceback" not in result.stderr
        forced = cli("promote", "churn_strict", "1", "--force", "--reason", "x", "-p", str(ws.root))
        assert forced.code == 1 and "refusing to load" in forced.stderr  # --force: gates only
        assert ws.catalog.aliases("churn_strict") == aliases
    finally:
        path.write_bytes(original)
    assert ws.models.load("churn_strict", 1).version == 1


def test_batch_scoring_takes_each_users_latest_profile_as_of_a_time(ws: Workspace) -> None:
    as_of = datetime(2026, 4, 15)
    result = ws.models.score("churn", table="user_profile", as_of=as_of, model=1)
    predictions = ws.read(result.predictions_table, result.predictions_version)
    profile = ws.read("user_profile", result.table_version).to_pandas()
    expected = profile[profile.as_of <= as_of].sort_values("as_of").groupby("user_id").tail(1)
    assert result.rows == predictions.num_rows == len(expected)
    got = predictions.to_pandas().set_index("user_id").loc[expected.user_id]
    assert (got["as_of"].to_numpy() == expected["as_of"].to_numpy()).all()
    assert set(predictions["model_version"].to_pylist()) == {1}
    assert set(predictions["model"].to_pylist()) == {"churn"}
    import pyarrow as pa

    direct = ws.models.load("churn", 1).predict(
        pa.Table.from_pandas(expected, preserve_index=False)
    )
    np.testing.assert_allclose(got["score"].to_numpy(), direct, rtol=0, atol=0)
    assert (got["predicted"].to_numpy() == (direct >= 0.2)).all()
    history = ws.history(result.predictions_table)
    assert history[-1].inputs == {"user_profile": result.table_version}


def test_cli_lists_shows_compares_and_refuses(ws: Workspace, cli: Callable[..., CliResult]) -> None:
    p = ("--project", str(ws.root))
    listed = {m["name"]: m for m in cli("models", "--json", *p).json()}
    assert listed["churn"]["versions"] >= 1 and listed["churn"]["training_set"] == "churn_training"
    shown = cli("models", "show", "churn", "1", "--json", *p).json()
    assert shown["metrics"]["roc_auc"]["low"] is not None
    assert shown["lineage"]["inputs"] == {"churn_labels": 0, "user_profile": 0}
    compared = cli("models", "compare", "churn", "1", "2", "--json", *p)
    assert compared.code == 0 and all(r["delta"] == 0 for r in compared.json()["metrics"])
    refused = cli("promote", "churn_strict", "1", "--alias", "prod", "--json", *p)
    assert refused.code == 1 and refused.json()["error"] == "GateRefused"
    unknown = cli("models", "show", "churn", "99", *p)
    assert unknown.code == 2 and "no version 99" in unknown.stderr
    card = cli("models", "card", "churn", "1", "--format", "html", *p)
    assert "<table>" in card.stdout and "Intended use" in card.stdout


def test_xgboost_models_store_native_json_and_score(ws: Workspace) -> None:
    v = ws.models.version("churn_xgb", 1)
    assert v.details["artifact"]["format"] == "xgboost-json"
    assert ws.artifacts.get(v.artifact_digest).startswith(b"{")
    test, y = _test_rows(ws, "churn_xgb")
    scores = ws.models.load("churn_xgb", 1).predict(test)
    assert v.metrics["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)


def test_scoring_a_plain_table_keeps_its_other_columns(ws: Workspace) -> None:
    training = ws.materialization("churn_training")
    result = ws.models.score("churn", table="churn_training", model=1, into="scored_labels")
    scored = ws.read("scored_labels", result.predictions_version)
    assert result.rows == scored.num_rows == training.rows
    assert {"user_id", "label_ts", "churned", "user_profile__as_of", "score"} <= set(
        scored.column_names
    )
    assert "tenure_days" not in scored.column_names  # a feature: not repeated
    with pytest.raises(ScoringError, match="--as-of needs a feature view"):
        ws.models.score("churn", table="churn_training", as_of=datetime(2026, 5, 1))


@pytest.mark.parametrize(
    ("into", "says"),
    [
        ("users", "a table the project builds"),
        ("churn_training", "a table the project builds"),
        ("churn__quarantine", "keeps for itself"),
        ("../../escaped", "is not a table name"),
        ("bad name/../x", "is not a table name"),
    ],
)
def test_scores_go_only_into_a_table_of_their_own(
    ws: Workspace, cli: Callable[..., CliResult], into: str, says: str
) -> None:
    before = ws.catalog.latest("users").version
    result = cli("score", "churn", "--table", "user_profile", "--model-version", "1",
                 "--into", into, "-p", str(ws.root))  # fmt: skip
    assert result.code == 2 and says in result.stderr, result.stderr
    assert ws.catalog.latest("users").version == before
    assert not (ws.root / "escaped").exists() and not (ws.root.parent / "escaped").exists()
