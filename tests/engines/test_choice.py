"""engine = "auto": each SQL step on DuckDB unless its inputs reach auto_threshold, then on
Spark when Spark can run it the same; the dry run says where each step would run and why,
and a run's record where each step ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.errors import ConfigError
from gristmill.execution.engines.choice import EngineChooser
from gristmill.workspace import Workspace
from tests.conftest import write_project

CSV = "id,user_id,amount\n" + "".join(f"{i},u{i % 9},{i * 1.5}\n" for i in range(1, 3000))
MODULE = '''
import gristmill as gm

events = gm.source("events", "data/*.csv", columns={
    "id": "BIGINT", "user_id": "VARCHAR", "amount": "DOUBLE"})

totals = gm.table("totals", sql="""
SELECT user_id, count(*) AS n, sum(amount) AS total, sum(id) AS ids
FROM events GROUP BY user_id
""")

asof = gm.table("asof", sql="""
SELECT user_id, approx_count_distinct(id) AS n FROM events GROUP BY user_id
""")

checked = gm.table("checked", sql="SELECT id FROM events", checks=[gm.not_null("id")])

typed = gm.table("typed", sql="SELECT id FROM events", columns={"id": "BIGINT"})


@gm.table
def python_step(events):
    return events.limit(3)
'''


def project(tmp_path: Path, toml: str) -> Path:
    return write_project(
        tmp_path / "p", module=MODULE, sql={}, data={"a.csv": CSV}, toml='name = "t"\n' + toml
    )


def choices(ws: Workspace) -> dict[str, tuple[str | None, str | None]]:
    return {s.name: (s.engine, s.engine_reason) for s in ws.plan().steps if s.engine}


def test_small_inputs_run_on_duckdb_and_the_plan_says_why(tmp_path: Path) -> None:
    ws = Workspace.open(project(tmp_path, ""))  # engine = "auto", auto_threshold = 20GB
    assert ws.run(["events"]).ok
    ws = Workspace.open(ws.root)
    chosen = choices(ws)
    size = ws.lake.version_bytes("events", 0)
    assert 10_000 < size < 100_000
    engine, why = chosen["totals"]
    assert engine == "duckdb"
    assert why == f"inputs {size / 1000:.1f} KB < auto_threshold 20.0 GB"
    assert chosen["python_step"] == ("duckdb", "only SQL steps and training sets move to Spark")
    assert chosen["checked"] == chosen["typed"] == chosen["totals"]  # by size alone


def test_inputs_past_the_threshold_go_to_spark_unless_spark_cannot_run_them_the_same(
    tmp_path: Path,
) -> None:
    ws = Workspace.open(project(tmp_path, 'auto_threshold = "10KB"\n'))
    assert ws.run(["events"]).ok
    ws = Workspace.open(ws.root)
    chosen = choices(ws)  # pyspark and Java are here (the spark tests need them too)
    assert chosen["totals"][0] == chosen["checked"][0] == chosen["typed"][0] == "spark"
    assert (
        chosen["totals"][1].startswith("inputs ")
        and "≥ auto_threshold 10.0 KB" in chosen["totals"][1]
    )
    engine, why = chosen["asof"]
    assert engine == "duckdb"
    assert why.endswith(
        "but approx_count_distinct() (pipeline.py:13) has no verified mapping to Spark"
    )
    ws = Workspace.open(ws.root)  # as on a machine without pyspark: what the probe would say
    ws.__dict__["engine_chooser"] = EngineChooser(
        ws.lake,
        project_engine="auto",
        threshold_bytes=10_000,
        spark_missing=lambda: "pyspark is not installed (pip install 'gristmill[spark]')",
    )
    engine, why = choices(ws)["totals"]
    assert engine == "duckdb" and why.endswith(", but pyspark is not installed "
                                               "(pip install 'gristmill[spark]')")  # fmt: skip


def test_the_project_s_engine_puts_every_sql_step_there(tmp_path: Path) -> None:
    ws = Workspace.open(project(tmp_path, 'engine = "duckdb"\nauto_threshold = "1KB"\n'))
    assert ws.run(["events"]).ok
    assert choices(Workspace.open(ws.root))["totals"] == ("duckdb", "project engine = duckdb")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('auto_threshold = "big"\n', "'big' is not a size"),
        ('engine = "polars"\n', "engine"),
    ],
)
def test_bad_engine_settings_are_refused_with_the_line(
    tmp_path: Path, toml: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Workspace.open(project(tmp_path, toml)).plan()
    assert caught.value.location is not None and caught.value.location.line == 2


@pytest.mark.spark
def test_auto_runs_a_big_step_on_spark_with_duckdb_s_rows_and_records_where(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, 'auto_threshold = "10KB"\n')
    module = (root / "pipeline.py").read_text()
    pinned = module.replace('"totals", sql=', '"totals", engine="duckdb", sql=')
    (root / "pipeline.py").write_text(pinned + '''
totals_auto = gm.table("totals_auto", sql="""
SELECT user_id, count(*) AS n, sum(amount) AS total, sum(id) AS ids
FROM events GROUP BY user_id
""")
''')  # fmt: skip
    run = [sys.executable, "-m", "gristmill"]
    subprocess.run([*run, "run", "events", "-p", str(root)], check=True, capture_output=True)
    dry = subprocess.run(
        [*run, "run", "--dry-run", "--json", "-p", str(root)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    planned = {s["name"]: s for s in json.loads(dry.stdout)["steps"]}
    assert planned["totals_auto"]["engine"] == "spark"
    assert planned["totals"]["engine"] == "duckdb"
    assert planned["totals"]["engine_reason"] == "pinned: engine='duckdb'"
    done = subprocess.run(
        [*run, "run", "totals", "totals_auto", "--json", "-p", str(root)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    shown = subprocess.run(
        [*run, "runs", run_id, "--json", "-p", str(root)], capture_output=True, text=True
    )
    steps = {s["table"]: s for s in json.loads(shown.stdout)["steps"]}
    assert steps["totals_auto"]["engine"] == "spark"
    assert "≥ auto_threshold 10.0 KB" in steps["totals_auto"]["engine_reason"]
    assert steps["totals"]["engine"] == "duckdb"
    ws = Workspace.open(root)
    spark, duck = ws.read("totals_auto"), ws.read("totals")
    assert spark.schema == duck.schema
    assert sorted(spark.to_pylist(), key=repr) == sorted(duck.to_pylist(), key=repr)
    text = subprocess.run(
        [*run, "runs", run_id, "-p", str(root)], capture_output=True, text=True
    ).stdout
    assert "spark (inputs" in text
