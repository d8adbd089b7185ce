"""A model is a node of the graph: `run` trains it when its inputs change, not otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from gristmill.workspace import Workspace
from gristmill.workspace.init import init_project
from tests.conftest import CliResult

pytestmark = pytest.mark.slow


def _steps(outcome) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {s.name: (s.status.value, s.reason) for s in outcome.result.steps}


def test_run_trains_only_when_the_training_set_changed(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    init_project(root, example="churn", scale="tiny", seed=5)
    ws = Workspace.open(root)
    first = ws.run()
    assert first.ok, [s.error for s in first.result.steps if s.error]
    assert _steps(first)["churn"][0] == "success"
    assert ws.models.version("churn").version == 1
    assert ws.run().result.status == "noop"

    labels = root / "data" / "labels" / "more.jsonl"
    rows = [
        {"user_id": f"u_{i:07d}", "label_ts": "2026-06-15T00:00:00", "churned": i % 2}
        for i in range(40)
    ]
    labels.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    second = ws.run()
    steps = _steps(second)
    assert steps["churn_labels"] == ("success", "1 new file(s)")
    assert steps["churn_training"][0] == "success"
    assert steps["churn"] == ("success", "upstream 'churn_training' will change")
    v2 = ws.models.version("churn")
    assert (v2.version, v2.training_set_version) == (2, 1)
    assert v2.details["training_set_stats"]["labels"] == ws.materialization("churn_training").rows
    ws.close()


def test_training_on_too_few_rows_fails_the_step_with_a_message(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    root = tmp_path / "demo"
    init_project(root, example="churn", scale="tiny", seed=5)
    labels = root / "data" / "labels" / "churn_labels.jsonl"
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[:5]))
    result = cli("run", "--project", str(root))
    assert result.code == 1
    assert "churn: the training set has 5 labelled rows; too few to train" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli("models", "--json", "--project", str(root)).json()[0]["versions"] == 0
