"""A service answers with the same score as batch scoring, a decision and its reasons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from gristmill.errors import DefinitionError, EntityNotFound, ServingInputError
from gristmill.execution.ml.features import RowEncoder, to_matrix
from gristmill.workspace import Workspace
from gristmill.workspace.init import init_project
from tests.conftest import CliResult, built_example

pytestmark = pytest.mark.slow

LENIENT = """
lenient = gm.service(
    "lenient", model="churn", lookups=["user_profile"], on_missing="defaults",
    defaults={"plan": "free", "tenure_days": 30}, request_features=["country"],
    policy=gm.decision({"high": 0.5}, default="low", reasons=2),
)
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("svc") / "demo"
    ws = built_example(root, scale="small", seed=3, append=LENIENT)
    yield ws
    ws.close()


def test_online_predictions_equal_batch_scores_of_the_latest_profiles(ws: Workspace) -> None:
    scored = ws.models.score("churn", table="user_profile", model=1)
    batch = ws.read(scored.predictions_table, scored.predictions_version).to_pandas()
    sample = batch.sample(50, random_state=1)
    runtime = ws.services.runtime("churn")
    for row in sample.itertuples():
        online = runtime.predict({"user_id": row.user_id}, {})
        assert online.score == pytest.approx(row.score, abs=1e-12), row.user_id
        assert online.model_version == 1


def test_decisions_follow_the_bands_and_reasons_are_the_top_contributions(
    ws: Workspace,
) -> None:
    runtime = ws.services.runtime("churn")
    booster = runtime.model.model
    names = runtime.model.feature_names
    for user in ("u_0000006", "u_0000011", "u_0000100", "u_0001000"):
        p = runtime.predict({"user_id": user}, {})
        expected = "retention_offer" if p.score >= 0.3 else "watch" if p.score >= 0.15 else "none"
        assert p.decision == expected
        row = RowEncoder(runtime.model.manifest.features).encode(p.features)
        contrib = booster.predict(row, pred_contrib=True)[0, :-1]
        top = [names[i] for i in np.argsort(-contrib, kind="stable")[:3]]
        assert [r["feature"] for r in p.reasons] == top
        assert p.reasons[0]["contribution"] == pytest.approx(contrib.max(), abs=1e-6)
        assert p.reasons[0]["value"] == p.features[top[0]]


def test_the_row_encoder_equals_the_batch_encoder(ws: Workspace) -> None:
    model = ws.models.load("churn", 1)
    rows = ws.read("user_profile", limit=200).to_pylist()
    rows[0]["plan"] = "platinum"  # unknown category
    rows[1]["amount_avg_90d"] = None
    rows[2]["country"] = None
    table = pa.Table.from_pylist(rows)
    batch = to_matrix(table, model.manifest.features)
    encoder = RowEncoder(model.manifest.features)
    online = np.vstack([encoder.encode(r) for r in rows])
    np.testing.assert_array_equal(np.isnan(batch), np.isnan(online))
    np.testing.assert_array_equal(np.nan_to_num(batch), np.nan_to_num(online))


def test_unknown_entities_are_404_or_scored_with_defaults(ws: Workspace) -> None:
    with pytest.raises(EntityNotFound, match="user_id='nobody'"):
        ws.services.predict("churn", {"user_id": "nobody"})
    p = ws.services.predict("lenient", {"user_id": "nobody"}, {"country": "DE"})
    assert not p.found
    assert p.features["plan"] == "free" and p.features["country"] == "DE"
    assert p.decision in ("high", "low") and len(p.reasons) == 2
    with pytest.raises(ServingInputError, match="features.colour is not a request feature"):
        ws.services.predict("lenient", {"user_id": "u_0000006"}, {"colour": "red"})
    with pytest.raises(ServingInputError, match="entity.user_id is required"):
        ws.services.predict("churn", {})


def test_cli_predict(ws: Workspace, cli: Callable[..., CliResult]) -> None:
    p = ("--project", str(ws.root))
    result = cli("predict", "churn", "--entity", "user_id=u_0000006", "--json", *p)
    body = result.json()
    assert body["model_version"] == 1 and body["decision"] in ("retention_offer", "watch", "none")
    assert len(body["reasons"]) == 3
    missing = cli("predict", "churn", "--entity", "user_id=nobody", *p)
    assert missing.code == 2 and "no online features" in missing.stderr


def test_a_service_must_read_online_feature_views(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    init_project(root, example="churn", scale="tiny", seed=1)
    with open(root / "pipeline.py", "a") as handle:
        handle.write('\nbad = gm.service("bad", model="churn", lookups=["users"])\n')
    with pytest.raises(DefinitionError, match="'users' is not an online feature view"):
        Workspace.open(root)


CHALLENGED = """
challenged = gm.service(
    "challenged", model="churn", lookups=["user_profile"],
    challenger="challenger", challenger_share=0.5,
)
"""


def test_a_challenger_scores_in_shadow_or_takes_its_share(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    ws = built_example(root, scale="tiny", seed=2, append=CHALLENGED)
    solo = ws.services.runtime("challenged")
    assert solo.challenger is None  # no challenger alias yet: champion only
    assert ws.models.train("churn").ok
    ws.models.promote("churn", 2, alias="challenger", force=True, reason="t")
    runtime = ws.services.runtime("challenged")
    draws = iter([0.1, 0.9])
    runtime.draw = lambda: next(draws)
    first = runtime.predict({"user_id": "u_0000006"}, {})
    second = runtime.predict({"user_id": "u_0000006"}, {})
    assert (first.variant, first.model_version) == ("challenger", 2)
    assert (first.shadow.variant, first.shadow.model_version) == ("champion", 1)
    assert (second.variant, second.shadow.variant) == ("champion", "challenger")
    assert first.request_id == first.shadow.request_id
    assert ws.services.versions("challenged") == (1, 2)
    ws.close()


def test_lightgbm_fast_single_row_path_equals_booster_predict(ws: Workspace) -> None:
    model = ws.models.load("churn", 1)
    encoder = RowEncoder(model.manifest.features)
    for features in ws.read("user_profile", limit=100).to_pylist():
        row = encoder.encode(features)
        assert model.backend.predict_row(model.model, row) == model.model.predict(row)[0]
        np.testing.assert_array_equal(
            model.backend.contributions(model.model, row),
            model.model.predict(row, pred_contrib=True)[0, :-1],
        )


def test_a_default_of_the_wrong_type_is_refused_when_the_service_starts(ws: Workspace) -> None:
    from gristmill.errors import ServiceConfigError

    pipeline = ws.root / "pipeline.py"
    original = pipeline.read_text()
    pipeline.write_text(
        original + '\nodd = gm.service("odd", model="churn", lookups=["user_profile"], '
        'on_missing="defaults", defaults={"tenure_days": "thirty"})\n'
    )
    try:
        other = Workspace.open(ws.root)
        with pytest.raises(ServiceConfigError, match=r"defaults\['tenure_days'\] is 'thirty'"):
            other.services.runtime("odd")
        other.close()
    finally:
        pipeline.write_text(original)
