"""Pipeline benchmark (not a test). Run with `make bench` or:

    benchmarks/.venv/bin/python benchmarks/pipeline.py [--scale large] [--skip-large]

(a) building ``user_profile`` of the churn example through gristmill vs the same SQL run
    directly in DuckDB on the same Parquet files; (b) the same aggregation in PySpark
    local[2] and in pandas; (c) 100 trivial chained steps: per-step runner overhead vs
    Dagster and Prefect running the same 100-node graph; (d) a no-op re-run of the example.
Every contender runs in its own subprocess (clean imports, its own peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
sys.path.insert(0, str(HERE))

from results import dispatch_worker, median, peak_rss_mb, run_worker, write_section  # noqa: E402


def worker(name: str, *args: str, timeout: int = 3600) -> dict:
    return run_worker(__file__, name, *args, timeout=timeout)


# ---- (c) chained steps --------------------------------------------------------------


def chain_project(root: Path, n: int) -> Path:
    (root / "sql").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "gristmill.toml").write_text('name = "chain"\nparallelism = 1\n')
    (root / "data" / "a.csv").write_text("x\n1\n")
    (root / "pipeline.py").write_text(
        'import gristmill as gm\ns_0 = gm.source("s_0", "data/*.csv", columns={"x": "BIGINT"})\n'
    )
    for i in range(1, n + 1):
        (root / "sql" / f"s_{i}.sql").write_text(f"select x + 1 as x from s_{i - 1}\n")
    return root


def w_chain_gristmill(n: str) -> dict:
    from gristmill.workspace import Workspace

    steps = int(n)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ws = Workspace.open(chain_project(Path(tmp) / "p", steps))
        first = ws.run()
        cold = time.perf_counter() - start
        assert first.ok and ws.read(f"s_{steps}")["x"].to_pylist() == [steps + 1]
        warm = []
        for _ in range(3):
            start = time.perf_counter()
            assert ws.run(full_refresh=True).ok
            warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert ws.run().result.status == "noop"
        noop = time.perf_counter() - start
    return {"cold_s": cold, "warm_s": median(warm), "noop_s": noop, "rss_mb": peak_rss_mb()}


def w_chain_dagster(n: str) -> dict:
    import dagster as dg

    steps = int(n)

    def make(i: int):  # noqa: ANN202
        if i == 0:

            @dg.asset(name="s_0")
            def first() -> int:
                return 1

            return first

        @dg.asset(name=f"s_{i}", ins={"prev": dg.AssetIn(key=f"s_{i - 1}")})
        def step(prev: int) -> int:
            return prev + 1

        return step

    assets = [make(i) for i in range(steps + 1)]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        instance = dg.DagsterInstance.ephemeral(tempdir=tmp)
        for _ in range(4):
            start = time.perf_counter()
            result = dg.materialize(
                assets,
                instance=instance,
                resources={"io_manager": dg.FilesystemIOManager(base_dir=tmp)},
            )
            times.append(time.perf_counter() - start)
            assert result.success and result.output_for_node(f"s_{steps}") == steps + 1
    return {"cold_s": times[0], "warm_s": median(times[1:]), "rss_mb": peak_rss_mb()}


def w_chain_prefect(n: str) -> dict:
    from prefect import flow, task

    steps = int(n)

    @task
    def step(x: int) -> int:
        return x + 1

    @flow
    def chain() -> int:
        x = 1
        for _ in range(steps):
            x = step(x)
        return x

    times = []
    for _ in range(4):
        start = time.perf_counter()
        assert chain() == steps + 1
        times.append(time.perf_counter() - start)
    return {"cold_s": times[0], "warm_s": median(times[1:]), "rss_mb": peak_rss_mb()}


def prefect_env() -> dict[str, str]:
    home = DATA / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
    }


def bench_chain(n: int = 100) -> str:
    rows = []
    results = {"gristmill": worker("chain_gristmill", str(n))}
    results["dagster"] = worker("chain_dagster", str(n))
    os.environ.update(prefect_env())
    results["prefect"] = worker("chain_prefect", str(n))
    base = results["gristmill"]["warm_s"]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['warm_s'] / n * 1000:.1f} | {r['cold_s']:.2f} | "
            f"{r['warm_s'] / base:.1f}x | {r['rss_mb']:.0f} |"
        )
    g = results["gristmill"]
    return (
        f"### (c) {n} trivial chained steps: runner overhead per step\n\n"
        "Each step reads the previous one's single row and adds 1. gristmill: a SQL step "
        "per table, each a Delta commit plus catalog records; Dagster: `materialize` with the "
        "in-process executor and the filesystem IO manager; Prefect: a flow of chained tasks "
        "(ephemeral local API). Warm = median of 3 re-runs in the same process; cold = first "
        "run including imports and setup.\n\n"
        "| runner | warm ms/step | cold run s | warm time vs gristmill | peak RSS MB |\n"
        "|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"No-op re-run of the same 100-step project (in process): {g['noop_s'] * 1000:.0f} ms.\n"
        f"Target ≤ 5 ms/step: {'met' if g['warm_s'] / n <= 0.005 else 'not met'} "
        f"({g['warm_s'] / n * 1000:.1f} ms).\n"
    )


# ---- (d) no-op re-run of the example ------------------------------------------------


def bench_noop() -> str:
    gm = [sys.executable, "-m", "gristmill"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        subprocess.run(
            [*gm, "init", str(root), "--scale", "small"], check=True, capture_output=True
        )
        start = time.perf_counter()
        subprocess.run([*gm, "run", "-p", str(root)], check=True, capture_output=True)
        build = time.perf_counter() - start
        cli = []
        for _ in range(7):
            start = time.perf_counter()
            out = subprocess.run(
                [*gm, "run", "-p", str(root), "--json"], check=True, capture_output=True, text=True
            )
            cli.append(time.perf_counter() - start)
            assert json.loads(out.stdout)["summary"]["status"] == "noop"
        start_cost = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run([*gm, "--help"], check=True, capture_output=True)
            start_cost.append(time.perf_counter() - start)
        inproc = worker("noop_inprocess", str(root))
    return (
        "### (d) No-op re-run of the churn example (small scale, 7 tables)\n\n"
        f"| what | median |\n|---|---:|\n"
        f"| first build (`gristmill run`, wall) | {build:.2f} s |\n"
        f"| no-op `gristmill run` (wall, whole CLI process) | {median(cli) * 1000:.0f} ms |\n"
        f"| of which interpreter + imports (`gristmill --help`) | "
        f"{median(start_cost) * 1000:.0f} ms |\n"
        f"| no-op run in process (load project, reconcile, plan, record) | "
        f"{inproc['noop_ms']:.0f} ms |\n"
    )


def w_noop_inprocess(root: str) -> dict:
    from gristmill.workspace import Workspace

    times = []
    for _ in range(7):
        start = time.perf_counter()
        ws = Workspace.open(root)
        assert ws.run().result.status == "noop"
        ws.close()
        times.append(time.perf_counter() - start)
    return {"noop_ms": median(times[1:]) * 1000}


# ---- (a)/(b) user_profile on the large example --------------------------------------


def large_root(scale: str) -> Path:
    return DATA / scale


def w_prepare(scale: str) -> dict:
    from gristmill.workspace import Workspace
    from gristmill.workspace.init import init_project

    root = large_root(scale)
    generated = 0.0
    if not (root / "gristmill.toml").exists():
        start = time.perf_counter()
        init_project(root, example="churn", scale=scale, seed=7)
        generated = time.perf_counter() - start
    # Measure the current example, even on data generated by an older checkout.
    template = Path(__file__).resolve().parents[1] / "src/gristmill/examples/churn/project"
    for name in (
        "gristmill.toml",
        "pipeline.py",
        "sql/user_profile.sql",
        "sql/merchant_category_stats.sql",
    ):
        shutil.copy(template / name, root / name)
    ws = Workspace.open(root)
    start = time.perf_counter()
    outcome = ws.run(["users", "transactions", "events"])
    ingest = time.perf_counter() - start
    assert outcome.ok, [s.error for s in outcome.result.steps]
    files = {
        name: [str(Path(f)) for f in _files(ws, name)]
        for name in ("users", "transactions", "events")
    }
    rows = {name: ws.catalog.latest(name).rows for name in files}
    return {
        "generated_s": generated,
        "ingest_s": ingest,
        "files": files,
        "rows": rows,
        "ingest_ran": [s.name for s in outcome.result.steps if s.status.value == "success"],
    }


def _files(ws, name: str) -> list[str]:  # noqa: ANN001
    from deltalake import DeltaTable

    version = ws.catalog.latest(name).version
    return DeltaTable(str(ws.lake.path(name)), version=version).file_uris()


def w_profile_gristmill(scale: str) -> dict:
    from gristmill.workspace import Workspace

    ws = Workspace.open(large_root(scale))
    start = time.perf_counter()
    outcome = ws.run(["user_profile"], full_refresh=True)
    seconds = time.perf_counter() - start
    assert outcome.ok, [s.error for s in outcome.result.steps]
    data = ws.read("user_profile", columns=["txn_count_90d", "amount_sum_90d"])
    return {"s": seconds, "rows": data.num_rows, "check": _check(data), "rss_mb": peak_rss_mb()}


def _check(table) -> list[float]:  # noqa: ANN001
    import pyarrow.compute as pc

    return [
        float(pc.sum(table["txn_count_90d"]).as_py()),
        round(float(pc.sum(table["amount_sum_90d"]).as_py()), 0),
    ]


def w_profile_duckdb(scale: str, files_json: str) -> dict:
    import duckdb

    files = json.loads(Path(files_json).read_text())
    root = large_root(scale)
    sql = (root / "sql" / "user_profile.sql").read_text()
    out = Path(tempfile.mkdtemp()) / "user_profile.parquet"
    con = duckdb.connect(config={"memory_limit": "8GB"})  # as the example's gristmill.toml
    start = time.perf_counter()
    for name, paths in files.items():
        listing = ", ".join(f"'{p}'" for p in paths)
        con.execute(f"create view {name} as select * from read_parquet([{listing}])")
    con.execute(f"copy ({sql}) to '{out}' (format parquet)")
    seconds = time.perf_counter() - start
    table = con.sql(f"select txn_count_90d, amount_sum_90d from '{out}'").to_arrow_table()
    shutil.rmtree(out.parent)
    return {"s": seconds, "rows": table.num_rows, "check": _check(table), "rss_mb": peak_rss_mb()}


def w_profile_spark(scale: str, files_json: str) -> dict:
    from pyspark.sql import SparkSession

    files = json.loads(Path(files_json).read_text())
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench")
        .config("spark.driver.memory", "8g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    out = tempfile.mkdtemp()
    start = time.perf_counter()
    for name, paths in files.items():
        spark.read.parquet(*paths).createOrReplaceTempView(name)
    sql = (HERE / "sql" / "user_profile_spark.sql").read_text()
    spark.sql(sql).write.mode("overwrite").parquet(out)
    seconds = time.perf_counter() - start
    import pyarrow.parquet as pq

    table = pq.read_table(out, columns=["txn_count_90d", "amount_sum_90d"])
    spark.stop()
    shutil.rmtree(out)
    return {
        "s": seconds,
        "rows": table.num_rows,
        "check": _check(table),
        "rss_mb": peak_rss_mb(),
        "note": "driver Python only; the JVM is not counted",
    }


def w_profile_pandas(scale: str, files_json: str) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    files = json.loads(Path(files_json).read_text())
    start = time.perf_counter()
    read = {
        n: pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        for n, paths in files.items()
    }
    users, txns, events = read["users"], read["transactions"], read["events"]
    parts = []
    for as_of in pd.date_range("2025-11-01", "2026-07-01", freq="MS"):
        spine = users.loc[users.signup_ts < as_of, ["user_id", "plan", "country", "signup_ts"]]
        before = txns[txns.ts < as_of]
        w90 = before[before.ts >= as_of - pd.Timedelta(days=90)]
        g = w90.groupby("user_id")
        feats = pd.DataFrame(
            {
                "txn_count_7d": (w90.ts >= as_of - pd.Timedelta(days=7)).groupby(w90.user_id).sum(),
                "txn_count_30d": (w90.ts >= as_of - pd.Timedelta(days=30))
                .groupby(w90.user_id)
                .sum(),
                "txn_count_90d": g.size(),
                "amount_sum_7d": w90.amount.where(w90.ts >= as_of - pd.Timedelta(days=7), 0)
                .groupby(w90.user_id)
                .sum(),
                "amount_sum_30d": w90.amount.where(w90.ts >= as_of - pd.Timedelta(days=30), 0)
                .groupby(w90.user_id)
                .sum(),
                "amount_sum_90d": g.amount.sum(),
                "amount_avg_90d": g.amount.mean(),
                "category_diversity_90d": g.merchant_category.nunique(),
                "channel_count_90d": g.channel.nunique(),
            }
        )
        ev = events[(events.ts < as_of) & (events.ts >= as_of - pd.Timedelta(days=30))]
        eg = ev.groupby("user_id")
        efeats = pd.DataFrame(
            {
                "event_count_7d": (ev.ts >= as_of - pd.Timedelta(days=7)).groupby(ev.user_id).sum(),
                "event_count_30d": eg.size(),
                "logins_30d": (ev.event_type == "login").groupby(ev.user_id).sum(),
                "support_tickets_30d": (ev.event_type == "support_ticket")
                .groupby(ev.user_id)
                .sum(),
                "session_seconds_30d": eg.duration_s.sum(),
            }
        )
        last = before.groupby("user_id").ts.max().rename("last_txn_ts")
        frame = spine.join(feats, on="user_id").join(efeats, on="user_id").join(last, on="user_id")
        frame["as_of"] = as_of
        frame["tenure_days"] = ((as_of - frame.signup_ts).dt.total_seconds() // 86400).astype(int)
        frame["days_since_last_txn"] = (as_of - frame.last_txn_ts).dt.total_seconds() // 86400
        parts.append(frame.drop(columns=["signup_ts", "last_txn_ts"]))
    result = pd.concat(parts, ignore_index=True)
    counts = [
        c for c in result.columns if c.endswith(("_7d", "_30d", "_90d")) and c != "amount_avg_90d"
    ]
    result[counts] = result[counts].fillna(0)
    out = Path(tempfile.mkdtemp()) / "user_profile.parquet"
    result.to_parquet(out)
    seconds = time.perf_counter() - start
    table = pa.Table.from_pandas(result[["txn_count_90d", "amount_sum_90d"]].astype(np.float64))
    shutil.rmtree(out.parent)
    return {"s": seconds, "rows": table.num_rows, "check": _check(table), "rss_mb": peak_rss_mb()}


def bench_profile(scale: str, repeats: int, peers: list[str]) -> str:
    prep = worker("prepare", scale)
    files_json = DATA / f"{scale}-files.json"
    files_json.write_text(json.dumps(prep["files"]))
    runs: dict[str, list[dict]] = {"gristmill": [], "duckdb": []}
    for _ in range(repeats):  # interleaved, so that machine noise hits both alike
        runs["gristmill"].append(worker("profile_gristmill", scale))
        runs["duckdb"].append(worker("profile_duckdb", scale, str(files_json)))
    for peer in peers:
        try:
            runs[peer] = [worker(f"profile_{peer}", scale, str(files_json))]
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            runs[peer] = [{"error": str(exc)[-300:]}]
    g = median([r["s"] for r in runs["gristmill"]])
    d = median([r["s"] for r in runs["duckdb"]])
    rows = []
    for name, results in runs.items():
        ok = [r for r in results if "s" in r]
        if not ok:
            rows.append(f"| {name} | failed: {results[0]['error'][:120]} | | | | |")
            continue
        s = median([r["s"] for r in ok])
        rows.append(
            f"| {name} | {s:.1f} | {len(ok)} | {s / d:.2f}x | {ok[0]['rss_mb']:.0f} | "
            f"{ok[0]['rows']:,} / {ok[0]['check']} |"
        )
    overhead = (g - d) / d
    return (
        f"### (a, b) Building `user_profile` on the {scale} churn example\n\n"
        f"Inputs: {prep['rows']['users']:,} users, {prep['rows']['transactions']:,} "
        f"transactions, {prep['rows']['events']:,} events (after contracts). Ingesting them "
        f"through gristmill (CSV/Parquet → typed, checked, quarantined, Delta) took "
        f"{prep['ingest_s']:.0f} s this run"
        + (" (already ingested)" if not prep["ingest_ran"] else "")
        + ". "
        "gristmill = `run user_profile --full-refresh` (reads the Delta versions, DuckDB with "
        "the project's 8 GB memory limit, streams into a new Delta version, checks the "
        "contract, records the catalog); duckdb = the same SQL in a fresh DuckDB (8 GB) over "
        "the same Parquet files, `COPY` to one Parquet file. PySpark local[2] runs the same "
        "query in Spark SQL (ASOF replaced by a grouped join); pandas computes it per month "
        "with boolean masks and groupby. The last column is a correctness check: rows and "
        "(Σ txn_count_90d, Σ amount_sum_90d), which must agree.\n\n"
        "| contender | median s | runs | vs duckdb | peak RSS MB | rows / checksum |\n"
        "|---|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n\n"
        f"gristmill's overhead over plain DuckDB: {overhead:+.0%} (target ≤ 15%: "
        f"{'met' if overhead <= 0.15 else 'not met'}).\n"
    )


def previous_profile() -> str:
    """The (a, b) part of the pipeline section in RESULTS.md, marked with when it was
    measured ('' when there is none)."""
    text = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").exists() else ""
    found = re.search(r"<!-- pipeline:start -->(.*?)<!-- pipeline:end -->", text, re.S)
    if not found or "### (a, b)" not in found.group(1):
        return ""
    part = found.group(1)
    profile = part[part.index("### (a, b)") : part.index("### (c)")]
    profile = "\n".join(line for line in profile.splitlines() if not line.startswith("_")).rstrip()
    stamp = re.search(r"_\(a, b\) measured [^_]*UTC|_measured ([^_]*UTC)", part)
    when = stamp.group(0).split("measured ")[-1] if stamp else "an earlier run"
    return f"{profile}\n\n_(a, b) kept from the full run of {when} (--skip-large)_\n"


def main() -> None:
    if dispatch_worker(globals()):
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="large")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--peers", default="spark,pandas")
    args = parser.parse_args()
    sections = [bench_chain(), bench_noop()]
    if not args.skip_large:
        peers = [p for p in args.peers.split(",") if p]
        sections.insert(0, bench_profile(args.scale, args.repeats, peers))
    else:  # keep the large example's figures of the last full run, with their own date
        kept = previous_profile()
        if kept:
            sections.insert(0, kept)
    write_section("pipeline", "## Pipeline (`benchmarks/pipeline.py`)\n\n" + "\n".join(sections))
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
