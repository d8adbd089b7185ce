"""SQL steps pinned to Spark (`engine="spark"`): the same rows as on DuckDB, written by
Spark's executors and committed by the lake; what Spark cannot run the same is refused
before it runs, with its file and line."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gristmill.errors import DefinitionError
from gristmill.planning.planner import Backfill
from gristmill.workspace import Workspace
from tests.conftest import gm, write_project

pytestmark = pytest.mark.spark

CSV = "id,user_id,ts,amount,tags\n" + "".join(
    f"{i},u{i % 7},2026-11-{1 + (i // 7) % 28:02d} {i % 24:02d}:{i % 60:02d}:00,"
    f"{(i * 37) % 1000 / 10},{'a;b' if i % 3 else ''}\n"
    for i in range(1, 400)
)
QUERY = """SELECT user_id,
       dayofweek(ts) AS dow,
       isodow(ts) AS iso,
       count(*) AS n,
       sum(amount) AS total,
       quantile_cont(amount, 0.5) AS mid,
       max(ts) AS last_ts,
       min(CAST(ts AS DATE)) AS first_day,
       sum(id) AS "SumId",
       round(avg(amount), 2) AS Avg2,
       count_if(amount > 50) AS "many"
FROM events
GROUP BY user_id, dayofweek(ts), isodow(ts)
"""
MODULE = f'''
import gristmill as gm

events = gm.source("events", "data/*.csv", columns={{
    "id": "BIGINT", "user_id": "VARCHAR", "ts": "TIMESTAMP", "amount": "DOUBLE",
    "tags": "VARCHAR"}})

by_spark = gm.table("by_spark", engine="spark", sql="""{QUERY}""")
'''


def rows(ws: Workspace, name: str) -> list[tuple[object, ...]]:
    table = ws.read(name)
    columns = [table[c].to_pylist() for c in table.column_names]
    return sorted(zip(*columns, strict=True), key=repr)


def test_a_step_on_spark_gives_the_rows_duckdb_gives(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p", module=MODULE, sql={"by_duckdb.sql": QUERY}, data={"a.csv": CSV}
    )
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, outcome.result.error()
    ws = Workspace.open(root)
    spark, duck = rows(ws, "by_spark"), rows(ws, "by_duckdb")
    assert len(duck) > 20 and spark == duck
    assert ws.read("by_spark").schema == ws.read("by_duckdb").schema
    files = [p.name for p in ws.lake.path("by_spark").rglob("*.parquet")]
    assert files and all(f.startswith("part-") for f in files)  # Spark's executors wrote them
    again = ws.run()
    assert again.ok and again.result.status == "noop"


def test_what_spark_cannot_run_the_same_is_refused_with_its_line(tmp_path: Path) -> None:
    module = MODULE.replace(
        'sql="""' + QUERY + '""")',
        'sql="""SELECT e.id,\n  f.amount\nFROM events e\nPOSITIONAL JOIN events f""")',
    )
    module += '\nlate = gm.table(\n    "late",\n    engine="spark",\n    sql="""\n' \
        '    SELECT id,\n        my_udf(amount)\n    FROM events\n""",\n)\n'  # fmt: skip
    root = write_project(tmp_path / "p", module=module, sql={}, data={"a.csv": CSV})
    outcome = Workspace.open(root).run()
    assert not outcome.ok
    errors = {s.name: s.error for s in outcome.result.steps if s.error}
    asof = errors["by_spark"]
    assert asof["message"] == "by_spark: POSITIONAL JOIN has no verified mapping to spark"
    assert asof["location"].endswith("pipeline.py:11")  # the step (line 8) + the SQL's 4th - 1
    assert "DuckDB's own" in asof["hint"]
    udf = errors["late"]  # its SQL opens on line 16, a line below its string's quotes
    assert udf["message"] == "late: my_udf() has no verified mapping to spark"
    assert udf["location"].endswith("pipeline.py:18"), udf
    ws = Workspace.open(root)
    assert not ws.lake.exists("by_spark") and not ws.lake.exists("late")


FINISHED = """
TYPED = dict(sql="SELECT id, amount, tags AS n FROM events", checks=[gm.not_null("n")],
    columns={"id": "BIGINT", "amount": "DOUBLE", "n": "INTEGER"}, max_quarantine_share=0.9)
DAILY = "SELECT CAST(ts AS DATE) AS day, user_id, sum(amount) AS total FROM events GROUP BY ALL"
typed_spark = gm.table("typed_spark", engine="spark", **TYPED)
typed_duckdb = gm.table("typed_duckdb", **TYPED)
daily_spark = gm.table("daily_spark", engine="spark", sql=DAILY,
    partitions=gm.daily("day", start="2026-11-01", batch=2))
daily_duckdb = gm.table("daily_duckdb", sql=DAILY,
    partitions=gm.daily("day", start="2026-11-01", batch=2))
"""


def test_partitioned_and_typed_steps_on_spark_are_finished_by_duckdb(tmp_path: Path) -> None:
    """Spark computes the rows of a step with declared types or partitions; DuckDB types,
    checks, quarantines and writes them into their partitions: the same tables, the same
    quarantine, and a backfill of some days replaces just those days, on both engines."""
    csv = CSV.replace(",a;b\n", ",12\n", 50)  # some tags that cast to INTEGER
    root = write_project(tmp_path / "p", module=MODULE + FINISHED, sql={}, data={"a.csv": csv})
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, outcome.result.error()
    steps = {s["table"]: s for s in ws.run_info(outcome.result.run_id).steps}
    assert steps["typed_spark"]["engine"] == steps["daily_spark"]["engine"] == "spark"
    assert steps["typed_duckdb"]["engine"] == steps["daily_duckdb"]["engine"] == "duckdb"
    ws = Workspace.open(root)
    built = ws.read("daily_spark").to_pylist()
    for ours, theirs in (("typed_spark", "typed_duckdb"), ("daily_spark", "daily_duckdb")):
        assert ws.read(ours).schema == ws.read(theirs).schema, ours
        assert rows(ws, ours) == rows(ws, theirs) and len(rows(ws, ours)) > 40, ours
    typed = {s.name: s for s in outcome.result.steps}
    assert typed["typed_spark"].quarantine_counts == typed["typed_duckdb"].quarantine_counts
    assert typed["typed_spark"].quarantined == typed["typed_duckdb"].quarantined > 100
    assert (
        ws.quarantine("typed_spark")
        .drop(["_run_id"])
        .sort_by("id")
        .equals(ws.quarantine("typed_duckdb").drop(["_run_id"]).sort_by("id"))
    )
    assert str(ws.read("typed_spark").schema.field("n").type) == "int32"
    # a backfill of three days, two per query: just those days are replaced
    with (root / "data" / "a.csv").open("a") as more:
        more.write("9001,u1,2026-11-03 10:00:00,999.5,\n9002,u1,2026-11-20 10:00:00,999.5,\n")
    assert Workspace.open(root).run(["events"]).ok
    for table in ("daily_spark", "daily_duckdb"):
        done = Workspace.open(root).backfill(
            Backfill(table, "2026-11-02", "2026-11-04", force=True)
        )
        assert done.ok, done.result.error()
    ws = Workspace.open(root)
    assert rows(ws, "daily_spark") == rows(ws, "daily_duckdb")
    by_day = {(r["day"].day, r["user_id"]): r["total"] for r in ws.read("daily_spark").to_pylist()}
    before = {(r["day"].day, r["user_id"]): r["total"] for r in built}
    assert by_day[(3, "u1")] == pytest.approx(before[(3, "u1")] + 999.5)  # rebuilt
    assert by_day[(20, "u1")] == before[(20, "u1")]  # outside the range: kept
    assert {k: v for k, v in by_day.items() if k[0] != 3} == {
        k: v for k, v in before.items() if k[0] != 3
    }


CHECKED_QUERY = """SELECT user_id, amount, CAST(ts AS DATE) AS day, tags
FROM events
"""
CHECKS = """checks=[gm.unique("user_id", "day"), gm.in_range("amount", min=5),
            gm.not_null("tags"), gm.accepted_values("user_id", ["u1", "u2", "u3", "u4", "u5"])],
    max_quarantine_share=0.9"""


def test_checks_on_spark_quarantine_the_rows_duckdb_quarantines(tmp_path: Path) -> None:
    """A step's checks run on Spark: the same good rows, and the same quarantined rows with
    the same reasons and the same text values (DOUBLE, DATE), as on DuckDB."""
    module = MODULE.replace('sql="""' + QUERY + '""")', f'sql="""{CHECKED_QUERY}""", {CHECKS})')
    module += f'\nby_duckdb = gm.table("by_duckdb", sql="""{CHECKED_QUERY}""", {CHECKS})\n'
    root = write_project(tmp_path / "p", module=module, sql={}, data={"a.csv": CSV})
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, outcome.result.error()
    steps = {s.name: s for s in outcome.result.steps}
    assert steps["by_spark"].quarantine_counts == steps["by_duckdb"].quarantine_counts
    counts = steps["by_spark"].quarantine_counts
    assert set(counts) == {
        "unique(user_id, day)",
        "range(5 <= amount)",
        "not_null(tags)",
        "accepted_values(user_id)",
    }, counts
    assert steps["by_spark"].quarantined == steps["by_duckdb"].quarantined > 100
    ws = Workspace.open(root)
    assert rows(ws, "by_spark") == rows(ws, "by_duckdb") and len(rows(ws, "by_spark")) > 20
    assert ws.read("by_spark").schema == ws.read("by_duckdb").schema
    files = [p.name for p in ws.lake.path("by_spark").rglob("*.parquet")]
    assert files and all(f.startswith("part-") for f in files)  # Spark's executors wrote them

    def quarantined(name: str) -> list[tuple[object, ...]]:
        table = ws.quarantine(name).drop(["_run_id"])
        columns = [table[c].to_pylist() for c in table.column_names]
        return sorted(zip(*columns, strict=True), key=repr)

    assert quarantined("by_spark") == quarantined("by_duckdb")
    assert "48.1" in {r[1] for r in quarantined("by_spark")}  # a DOUBLE as DuckDB prints it


def test_a_wrong_engine_name_is_refused_at_load_time(tmp_path: Path) -> None:
    module = MODULE.replace('engine="spark"', 'engine="sparkk"')
    root = write_project(tmp_path / "p", module=module, sql={}, data={"a.csv": CSV})
    with pytest.raises(DefinitionError, match="engine='sparkk' is not an engine") as caught:
        Workspace.open(root).plan()
    assert "duckdb, spark" in caught.value.hint


def test_spark_that_cannot_start_says_what_to_install(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", module=MODULE, sql={}, data={"a.csv": CSV})
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    proc = subprocess.run(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "Spark did not start (master local[2])" in out, out
    assert "Java 17" in out and "Traceback" not in out


def test_a_failing_spark_step_says_spark_s_reason_without_java_s_logs(tmp_path: Path) -> None:
    module = MODULE.replace(QUERY, "SELECT user_id, CAST(id / 0 AS BIGINT) AS boom FROM events")
    started = time.time()
    root = write_project(tmp_path / "p", module=module, sql={}, data={"a.csv": CSV})
    proc = subprocess.run(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "by_spark: Spark: [CAST_OVERFLOW] The value Infinity" in out, out  # as DuckDB fails
    logs = Path(tempfile.gettempdir()) / "gristmill-spark"
    fresh = [p for p in logs.glob("*.log") if p.stat().st_mtime >= started]
    assert any("CAST_OVERFLOW" in p.read_text(errors="replace") for p in fresh), fresh
    for noise in ("\tat org.apache", "log4j", "WARN", "ERROR TaskSetManager", "Traceback", '{"ts"'):
        assert noise not in out, out


ACTIVITY = '''
activity = gm.feature_view("activity", entity="user_id", timestamp="day", sql="""
SELECT user_id, date_trunc('day', ts) AS day, count(*) AS events, sum(duration_s) AS seconds
FROM events GROUP BY ALL
""")
wide_training = gm.training_set(
    "wide_training", labels="churn_labels", entity="user_id", timestamp="label_ts",
    label="churned",
    features=[gm.features("user_profile", ttl="45d"), gm.features("activity", ttl="3d"),
              gm.features("activity", prefix="any_")],
)
'''


def test_the_example_on_spark_equals_duckdb_s_sql_steps_training_sets_model_scores(
    tmp_path: Path,
) -> None:
    """The churn example with engine = "spark" against the same with engine = "duckdb":

    - user_profile (ASOF JOIN, series of months, FILTER, distinct counts through lists,
      epoch, decimal averages; its checks and monthly partitions finished by DuckDB),
      merchant_category_stats (GROUP BY ALL): every row, every column, same types;
    - the training sets (the example's, and one joining two views with and without a
      TTL), built point in time with one ASOF join per view: same rows and statistics;
    - the model trained on each: same metrics; batch scoring by Spark's workers: same
      predictions."""
    from gristmill.workspace.init import init_project

    built = {}
    for engine in ("duckdb", "spark"):
        root = tmp_path / engine
        init_project(root, example="churn", scale="tiny", seed=3)
        with (root / "pipeline.py").open("a") as module:
            module.write(ACTIVITY)
        config = root / "gristmill.toml"
        config.write_text(config.read_text().replace('engine = "auto"', f'engine = "{engine}"'))
        ws = Workspace.open(root)
        outcome = ws.run()
        assert outcome.ok, outcome.result.error()
        steps = {s["table"]: s for s in ws.run_info(outcome.result.run_id).steps}
        assert steps["churn_training"]["engine"] == engine
        assert steps["wide_training"]["engine"] == engine
        assert steps["merchant_category_stats"]["engine"] == engine
        assert steps["user_profile"]["engine"] == engine  # partitioned: DuckDB finishes
        built[engine] = Workspace.open(root)
    duck, spark = built["duckdb"], built["spark"]
    for ours, theirs in (
        (spark.read("user_profile"), duck.read("user_profile")),
        (spark.read("merchant_category_stats"), duck.read("merchant_category_stats")),
    ):
        assert ours.num_rows > 50 and ours.schema == theirs.schema, ours.schema
        assert sorted(ours.to_pylist(), key=repr) == sorted(theirs.to_pylist(), key=repr)
    for name in ("churn_training", "wide_training"):
        ours, theirs = spark.read(name), duck.read(name)
        assert ours.schema == theirs.schema, name
        assert ours.num_rows == theirs.num_rows > 500
        assert sorted(ours.to_pylist(), key=repr) == sorted(theirs.to_pylist(), key=repr), name
        assert spark.materialization(name).stats == duck.materialization(name).stats
    missing = duck.materialization("wide_training").stats["missing"]
    assert 0 < missing["activity"] < duck.read("wide_training").num_rows  # the TTL bites
    files = [p.name for p in spark.lake.path("churn_training").rglob("*.parquet")]
    assert files and all(f.startswith("part-") for f in files)  # Spark's executors wrote them
    assert spark.models.version("churn", 1).metrics == duck.models.version("churn", 1).metrics
    # batch scoring: on Spark its workers load the model and score; the same predictions
    for ws in (duck, spark):
        ws.models.promote("churn", 1, force=True, reason="tests")
    on_duckdb = duck.models.score("churn", table="user_profile")
    on_spark = spark.models.score("churn", table="user_profile")
    assert (on_duckdb.engine, on_spark.engine) == ("duckdb", "spark")
    assert on_spark.engine_reason == "project engine = spark"
    assert on_spark.rows == on_duckdb.rows > 100
    assert on_spark.score_mean == pytest.approx(on_duckdb.score_mean, rel=1e-12)
    assert on_spark.predicted_positive == on_duckdb.predicted_positive
    ours, theirs = spark.read("churn__predictions"), duck.read("churn__predictions")
    assert ours.schema == theirs.schema
    assert sorted(ours.to_pylist(), key=repr) == sorted(theirs.to_pylist(), key=repr)
    files = [p.name for p in spark.lake.path("churn__predictions").rglob("*.parquet")]
    assert files and all(f.startswith("part-") for f in files)
    shown = gm(spark.root, "score", "churn", "--table", "user_profile")  # the CLI says where
    assert shown.returncode == 0, shown.stderr
    assert "scored on spark (project engine = spark)" in shown.stdout, shown.stdout
    # the drift monitor: on Spark the workers score both sides and the engine aggregates
    # the statistics; the same values (to 1e-9) and charts as DuckDB's in-process ones
    evaluated = {e: ws.monitors.run(["churn_drift"])[0] for e, ws in built.items()}
    assert evaluated["spark"].state == evaluated["duckdb"].state != "error"
    assert (evaluated["spark"].engine, evaluated["duckdb"].engine) == ("spark", "duckdb")
    assert evaluated["spark"].rows == evaluated["duckdb"].rows > 100
    found = {
        e: {
            (r.subject, r.statistic): r
            for r in ws.monitors.results("churn_drift")
            if r.evaluation_id == evaluated[e].evaluation_id
        }
        for e, ws in built.items()
    }
    assert found["spark"].keys() == found["duckdb"].keys()
    assert {s for s, _ in found["spark"]} >= {"score", "amount_avg_90d", "plan"}
    for key, theirs in found["duckdb"].items():
        ours = found["spark"][key]
        if theirs.value is None:  # not finite: stored as NULL
            assert ours.value is None, key
        else:
            assert ours.value == pytest.approx(theirs.value, rel=1e-9, abs=1e-9), key
        assert ours.state == theirs.state, key
        assert ours.details["engine"] == "spark"
        chart, expected = ours.details.get("chart"), theirs.details.get("chart")
        if expected and "edges" in expected:
            assert chart["edges"] == pytest.approx(expected["edges"], rel=1e-9), key
            assert chart["current"] == pytest.approx(expected["current"], rel=1e-9), key
        else:
            assert chart == expected, key
    from gristmill.cli.render import evaluation_line, out

    with out.capture() as shown:  # what `gristmill monitor run` prints of it
        evaluation_line(evaluated["spark"].to_dict())
    assert "(on spark: project engine = spark)" in shown.get(), shown.get()
