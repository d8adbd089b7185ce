"""The closed loop on the churn example with drift: monitors stay quiet before the drift,
fire after it, retraining runs, the gates decide, every step is on record, and the report
renders offline in headless Chromium with its charts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _drift_example(tmp_path: Path, cli, monkeypatch, gates: str | None = None) -> Path:  # noqa: ANN001
    folder = tmp_path / "demo"
    assert cli("init", str(folder), "--drift").code == 0
    if gates is not None:
        pipeline = folder / "pipeline.py"
        text = pipeline.read_text()
        text = text.replace('"roc_auc >= champion.roc_auc - 0.005",', gates)
        pipeline.write_text(text)
    monkeypatch.chdir(folder)
    first = cli("run", "--json")
    assert first.code == 0
    unjudged = {e["monitor"]: e for e in first.json()["summary"]["monitors"]}
    assert unjudged["churn_drift"]["state"] == "skipped"  # no champion yet
    assert "churn has no champion yet" in unjudged["churn_performance"]["skipped"]
    assert cli("promote", "churn", "1", "--force", "--reason", "test baseline").code == 0
    assert cli("score", "churn", "--table", "user_profile", "--as-of", "2026-06-01").code == 0
    return folder


def _arrive(folder: Path) -> None:
    shutil.copytree(folder / "arriving", folder / "data", dirs_exist_ok=True)


def test_drift_fires_after_new_data_and_retraining_goes_through_the_gates(
    tmp_path: Path,
    cli,
    monkeypatch,  # noqa: ANN001
) -> None:
    folder = _drift_example(tmp_path, cli, monkeypatch)
    before = cli("monitor", "run", "--json").json()
    states = {e["monitor"]: e["state"] for e in before}
    assert states["churn_drift"] == "ok"  # undrifted: no alert
    assert states["churn_performance"] == "ok"
    assert states["churn_live_drift"] == "skipped"  # nothing served

    _arrive(folder)
    # nobody types `run`: one scheduler tick, the example's sensor sees the new files
    tick = cli("scheduler", "--once", "--json").json()
    [built] = [r for r in tick["ran"] if r["requested_by"] == "sensor:new_transactions"]
    assert built["status"] == "success" and built["params"]["sensor"] == "new_transactions"
    status = {s["monitor"]: s for s in cli("monitor", "status", "--json").json()}
    alerts = cli("monitor", "alerts", "churn_drift", "--json").json()
    drift = {"state": status["churn_drift"]["state"], "action": alerts[-1]["action"]}
    assert drift["state"] == "alert"
    assert "amount_avg_90d psi" in alerts[-1]["message"]  # prices rose 70% after the drift
    quality = cli("monitor", "alerts", "transactions_quality", "--json").json()
    assert quality and "channel psi" in quality[-1]["message"]
    # the alert queued a retrain, a run of its own that the same tick ran after the build:
    # it retrained on the new labels (v2) and took v2 through the gates
    assert drift["action"] in ("promoted", "kept")
    [retrain] = [r for r in tick["ran"] if r["kind"] == "retrain"]
    assert retrain["requested_by"] == "monitor:churn_drift"
    assert retrain["status"] in ("success", "noop")  # the sensor's build may have trained v2
    assert retrain["summary"]["retrain"]["action"] == drift["action"]
    assert alerts[-1]["details"]["run_id"] == retrain["run_id"]
    assert [r["kind"] for r in tick["ran"]].index("retrain") > tick["ran"].index(built)
    history = cli("models", "history", "churn", "--json").json()
    actions = [(e["action"], e["actor"]) for e in history]
    assert ("retrain", "monitor:churn_drift") in actions
    champion = cli("models", "show", "churn", "champion", "--json").json()["version"]
    if drift["action"] == "promoted":
        assert champion == 2 and ("promote", "monitor:churn_drift") in actions
    else:
        assert champion == 1 and ("refused", "monitor:churn_drift") in actions

    status = {s["monitor"]: s for s in cli("monitor", "status", "--json").json()}
    assert status["churn_drift"]["state"] == "alert"
    assert len(status["churn_drift"]["trend"]) >= 2
    series = cli(
        "monitor",
        "history",
        "churn_drift",
        "--subject",
        "amount_avg_90d",
        "--statistic",
        "psi",
        "--json",
    ).json()
    assert {(r["subject"], r["statistic"]) for r in series} == {("amount_avg_90d", "psi")}
    assert len(series) == 2 and series[0]["value"] < 0.2 < series[-1]["value"]
    assert status["churn_drift"]["summary"].startswith(status["churn_drift"]["headline"]["subject"])
    alerts = cli("monitor", "alerts", "churn_drift", "--json").json()
    assert alerts and alerts[-1]["action"] == drift["action"]


def test_a_retrain_that_fails_its_gate_keeps_the_champion(
    tmp_path: Path,
    cli,
    monkeypatch,  # noqa: ANN001
) -> None:
    folder = _drift_example(tmp_path, cli, monkeypatch, gates='"roc_auc >= 0.99",')
    _arrive(folder)
    run = cli("run", "--json").json()
    drift = {e["monitor"]: e for e in run["summary"]["monitors"]}["churn_drift"]
    assert drift["state"] == "alert"
    assert drift["action"] == "kept"  # the foreground run ran the retrain it queued
    assert "roc_auc >= 0.99" in drift["action_details"]["reason"]
    retrains = cli("runs", "--kind", "retrain", "--json").json()
    assert [r["requested_by"] for r in retrains] == ["monitor:churn_drift"]
    # the evaluations after that build were a run of kind monitor, on record with it
    evaluations = cli("runs", "--kind", "monitor", "--json").json()
    assert evaluations[0]["requested_by"] == f"run:{run['run_id']}"
    assert evaluations[0]["status"] == "success"
    assert drift["action_details"]["run_id"] == retrains[0]["run_id"]
    shown = cli("runs", retrains[0]["run_id"])
    assert "decision" in shown.stdout and "kept v2" in shown.stdout
    assert cli("models", "show", "churn", "champion", "--json").json()["version"] == 1
    history = cli("models", "history", "churn", "--json").json()
    refused = [e for e in history if e["action"] == "refused"]
    assert refused and refused[-1]["version"] == 2 and refused[-1]["gates"]

    # A monitor that cannot run is an error with its reason (exit 1), not a quiet skip;
    # it is tried again on the next run.
    shutil.move(folder / "lake" / "churn_training", tmp_path / "moved")
    broken = cli("monitor", "run", "churn_drift", "--json")
    assert broken.code == 1
    (evaluation,) = broken.json()
    assert evaluation["state"] == "error" and "churn_training" in evaluation["error"]
    status = {s["monitor"]: s for s in cli("monitor", "status", "--json").json()}
    assert status["churn_drift"]["state"] == "error"
    assert "churn_training" in status["churn_drift"]["summary"]
    shutil.move(tmp_path / "moved", folder / "lake" / "churn_training")
    assert cli("monitor", "run", "churn_drift", "--json").json()[0]["state"] == "alert"


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_report_renders_offline_with_its_charts(
    tmp_path: Path,
    cli,
    monkeypatch,  # noqa: ANN001
) -> None:
    folder = _drift_example(tmp_path, cli, monkeypatch)
    assert cli("monitor", "run").code == 0
    _arrive(folder)
    assert cli("run").code == 0
    out = folder / "report.html"
    assert cli("monitor", "report", "churn", "--out", str(out)).code == 0
    html = out.read_text()
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<svg") >= 20
    assert dom.count('class="point"') >= 2 * 19  # PSI over two evaluations per feature
    assert 'class="bar"' in dom and 'class="threshold"' in dom
    assert "amount_avg_90d" in dom and "Audit trail" in dom
