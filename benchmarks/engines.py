"""Engines benchmark (not a test). Run with `make bench-engines` or:

    benchmarks/.venv/bin/python benchmarks/engines.py [--scale medium] [--repeats 2]

(a) The churn example's ``user_profile`` query on Spark local[2]: gristmill running the
    example's own DuckDB SQL on Spark (a step pinned with engine="spark": translated,
    written by Spark's executors, committed by the lake, recorded in the catalog) vs the
    same query hand-written in Spark SQL (benchmarks/sql/user_profile_spark.sql) run by
    plain PySpark over the same Parquet files and written to Parquet. Both from a cold
    process, Spark's start included, the same Spark settings.
(b) The same project's SQL steps end to end: with ``engine = "auto"`` (which picks DuckDB
    for inputs this size) the example's user_profile (its contract checked, its months
    built in one query) and merchant_category_stats; with ``engine = "spark"`` (forced) the
    same two steps on Spark (user_profile's rows computed by Spark, its types, checks and
    monthly partitions finished by DuckDB; the rows are the same, which a test checks).
Every contender runs in its own subprocess.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
sys.path.insert(0, str(HERE))

from pipeline import _check  # noqa: E402 - the same checksum as the pipeline benchmark
from results import dispatch_worker, median, run_worker, write_section  # noqa: E402

SPARK_CONF = {"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8"}
STEPS = """
from pathlib import Path

_sql = Path(__file__).parent / "sql"
profile_spark = gm.table(
    "profile_spark", engine="spark", sql=(_sql / "user_profile.sql").read_text()
)
"""


def worker(name: str, *args: str) -> dict:
    return run_worker(__file__, name, *args, timeout=7200)


def root_of(scale: str) -> Path:
    return DATA / f"engines-{scale}"


def toml(engine: str) -> str:
    conf = ", ".join(f'"{k}" = "{v}"' for k, v in SPARK_CONF.items())
    return (
        f'name = "engines"\nengine = "{engine}"\nmodules = ["sources.py", "pipeline.py"]\n'
        f'parallelism = 2\n\n[duckdb]\nmemory_limit = "8GB"\n\n[spark]\nmaster = "local[2]"\n'
        f"conf = {{{conf}}}\n"
    )


def w_prepare(scale: str) -> dict:
    from gristmill.workspace import Workspace
    from gristmill.workspace.init import init_project

    root = root_of(scale)
    start = time.perf_counter()
    if not (root / "gristmill.toml").exists():
        init_project(root, example="churn", scale=scale, seed=7)
        with (root / "pipeline.py").open("a") as module:
            module.write(STEPS)
    (root / "gristmill.toml").write_text(toml("auto"))
    ws = Workspace.open(root)
    outcome = ws.run(["users", "transactions", "events"])
    assert outcome.ok, [s.error for s in outcome.result.steps]
    files = {
        name: ws.lake.parquet_files(name, ws.lake.latest_version(name))
        for name in ("users", "transactions", "events")
    }
    sizes = {name: ws.lake.version_bytes(name, ws.lake.latest_version(name)) for name in files}
    rows = {name: ws.catalog.latest(name).rows for name in files}
    return {"s": time.perf_counter() - start, "files": files, "rows": rows, "bytes": sizes}


def w_gristmill(scale: str, engine: str, steps: str) -> dict:
    from gristmill.workspace import Workspace

    root = root_of(scale)
    (root / "gristmill.toml").write_text(toml(engine))
    names = steps.split(",")
    start = time.perf_counter()
    ws = Workspace.open(root)
    outcome = ws.run(names, full_refresh=True)
    seconds = time.perf_counter() - start
    assert outcome.ok, [s.error for s in outcome.result.steps]
    ran = {s["table"]: s["engine"] for s in ws.run_info(outcome.result.run_id).steps}
    profile = ws.read(names[0], columns=["txn_count_90d", "amount_sum_90d"])
    (root / "gristmill.toml").write_text(toml("auto"))
    return {"s": seconds, "rows": profile.num_rows, "check": _check(profile), "engines": ran}


def w_handwritten(files_json: str) -> dict:
    import pyarrow.parquet as pq

    files = json.loads(Path(files_json).read_text())
    out = tempfile.mkdtemp()
    start = time.perf_counter()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("bench")
    for key, value in {
        **SPARK_CONF,
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    for name, paths in files.items():
        spark.read.parquet(*paths).createOrReplaceTempView(name)
    sql = (HERE / "sql" / "user_profile_spark.sql").read_text()
    spark.sql(sql).write.mode("overwrite").parquet(out)
    seconds = time.perf_counter() - start
    table = pq.read_table(out, columns=["txn_count_90d", "amount_sum_90d"])
    spark.stop()
    shutil.rmtree(out)
    return {"s": seconds, "rows": table.num_rows, "check": _check(table)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    prep = worker("prepare", args.scale)
    files_json = Path(tempfile.mkdtemp()) / "files.json"
    files_json.write_text(json.dumps(prep["files"]))
    spark_runs: dict[str, list[dict]] = {"gristmill": [], "hand-written": []}
    auto_runs: dict[str, list[dict]] = {"auto": [], "spark": []}
    both = "user_profile,merchant_category_stats"
    steps = {"auto": both, "spark": both}
    for _ in range(args.repeats):  # interleaved: the machine's drift hits both alike
        spark_runs["gristmill"].append(worker("gristmill", args.scale, "spark", "profile_spark"))
        spark_runs["hand-written"].append(worker("handwritten", str(files_json)))
        for engine in ("auto", "spark"):
            auto_runs[engine].append(worker("gristmill", args.scale, engine, steps[engine]))
    shutil.rmtree(files_json.parent)
    med = {k: median([r["s"] for r in v]) for k, v in spark_runs.items()}
    auto = {k: median([r["s"] for r in v]) for k, v in auto_runs.items()}
    rows, size = prep["rows"], sum(prep["bytes"].values())
    overhead = med["gristmill"] / med["hand-written"]
    speedup = auto["spark"] / auto["auto"]
    lines = [
        f"### (a) `user_profile` on Spark local[2] ({args.scale} churn example)\n",
        f"Inputs: {rows['users']:,} users, {rows['transactions']:,} transactions, "
        f"{rows['events']:,} events ({size / 1e6:.0f} MB of Delta files). gristmill = "
        "`run profile_spark --full-refresh` in a fresh process: the example's DuckDB SQL "
        "translated for Spark (ASOF JOIN rewritten as a join with QUALIFY, series of months, "
        "distinct counts), Spark's executors write the files, the lake commits them as a "
        "Delta version, the catalog records it. hand-written = the same query in Spark SQL "
        "(`benchmarks/sql/user_profile_spark.sql`: recency as a grouped join), PySpark over "
        "the same Parquet files, written to Parquet. Both include Spark's start, with "
        f"{SPARK_CONF}. The last column must agree: rows and (Σ txn_count_90d, "
        "Σ amount_sum_90d).\n",
        "| contender | median s | runs | vs hand-written | rows / checksum |",
        "|---|---:|---:|---:|---|",
    ]
    for name, runs in spark_runs.items():
        lines.append(
            f"| {name} | {med[name]:.1f} | {len(runs)} | "
            f"{med[name] / med['hand-written']:.2f}x | {runs[0]['rows']:,} / {runs[0]['check']} |"
        )
    verdict = "met" if overhead <= 1.15 else "NOT met"
    lines += [
        "",
        f"gristmill on Spark vs hand-written Spark SQL: {overhead:.2f}x (target ≤ 1.15x: "
        f"{verdict}); per run: "
        + ", ".join(
            f"{g['s']:.1f}/{h['s']:.1f} s"
            for g, h in zip(spark_runs["gristmill"], spark_runs["hand-written"], strict=True)
        )
        + ".\n",
        f'### (b) `engine = "auto"` vs forced Spark, the same project ({args.scale})\n',
        "`run … --full-refresh` in a fresh process. auto: `user_profile` (the example's step: "
        "contract checked, its months built together) and `merchant_category_stats`, "
        f"auto_threshold 20 GB (the inputs' {size / 1e6:.0f} MB go to DuckDB); spark: "
        '`engine = "spark"`, the same two steps on Spark (user_profile\'s rows computed by '
        "Spark; its contract and monthly partitions finished by DuckDB; the rows are equal, "
        "tests/engines/test_spark_steps.py).\n",
        "| engine setting | ran on | median s | runs | rows / checksum |",
        "|---|---|---:|---:|---|",
    ]
    for name, runs in auto_runs.items():
        where = sorted(set(runs[0]["engines"].values()))
        lines.append(
            f"| {name} | {', '.join(where)} | {auto[name]:.1f} | {len(runs)} | "
            f"{runs[0]['rows']:,} / {runs[0]['check']} |"
        )
    verdict = "met" if speedup >= 3 else "NOT met"
    lines += [
        "",
        f"auto is {speedup:.1f}x faster end to end than forced Spark (target ≥ 3x: {verdict}).\n",
        "The scale-10 example (10M users, about 7.5 GiB of input) was not run: see the note "
        "of issue 14.\n",
    ]
    write_section("engines", "## Engines (`benchmarks/engines.py`)\n\n" + "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__" and not dispatch_worker(globals()):
    main()
