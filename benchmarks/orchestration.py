"""Orchestration benchmark (not a test). Run with `make bench-orchestration` or:

    benchmarks/.venv/bin/python benchmarks/orchestration.py [--only backfill,tick,cli,chain]

(a) per-step overhead on the 100-step chain, gristmill vs Dagster's in-process executor
    (the workers of pipeline.py, run again here in the same run);
(b) a backfill of 365 daily partitions of a small partitioned table, end to end from the
    CLI, vs Dagster materializing the same 365 partitions: one `materialize` per
    partition in one warm process (a lower bound of its daemon's backfill, which launches
    a run per partition, dagster#28998) and one single-run backfill of the whole range
    (BackfillPolicy.single_run, the fastest Dagster offers);
(c) tick to run start: an every-minute schedule's tick time and a sensor's file drop to
    the started_at of the run they queued, with a running `gristmill scheduler`;
(d) CLI responsiveness: `gristmill --help` and a no-op `gristmill run` of the example.
Every contender runs in its own subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results import dispatch_worker, median, peak_rss_mb, run_worker, write_section  # noqa: E402

GM = [sys.executable, "-m", "gristmill"]
DAYS = 365
START = date(2025, 1, 1)
ROWS_PER_DAY = 200


def worker(name: str, *args: str, timeout: int = 3600) -> dict:
    return run_worker(__file__, name, *args, timeout=timeout)


def gm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GM, *args], capture_output=True, text=True, check=check)


# ---- (a) the 100-step chain ---------------------------------------------------------


def w_chain_gristmill(n: str) -> dict:
    from pipeline import w_chain_gristmill as chain

    return chain(n)


def w_chain_dagster(n: str) -> dict:
    from pipeline import w_chain_dagster as chain

    return chain(n)


def bench_chain(n: int = 100, rounds: int = 3) -> str:
    runs: dict[str, list[float]] = {"gristmill": [], "dagster": []}
    for _ in range(rounds):  # interleaved: both see the same machine
        runs["gristmill"].append(worker("chain_gristmill", str(n))["warm_s"])
        runs["dagster"].append(worker("chain_dagster", str(n))["warm_s"])
    g, d = median(runs["gristmill"]) / n * 1000, median(runs["dagster"]) / n * 1000

    def per_round(name: str) -> str:
        return ", ".join(f"{v / n * 1000:.1f}" for v in runs[name])

    return (
        f"### (a) {n} chained steps: overhead per step\n\n"
        "Each step reads the previous one's single row and adds 1: a SQL step, a Delta "
        "commit and its catalog records per table for gristmill; `materialize` with the "
        "in-process executor and the filesystem IO manager for Dagster. Median of "
        f"{rounds} interleaved rounds, each the median of 3 warm re-runs.\n\n"
        "| runner | ms/step | per round |\n|---|---:|---|\n"
        f"| gristmill | {g:.1f} | {per_round('gristmill')} |\n"
        f"| dagster | {d:.1f} | {per_round('dagster')} |\n\n"
        f"Dagster / gristmill: **{d / g:.1f}x**. Targets: ≤ 3 ms/step "
        f"({'met' if g <= 3 else 'not met'}), "
        f"≥ 3x Dagster ({'met' if d / g >= 3 else 'not met'}).\n"
    )


# ---- (b) 365 partitions -------------------------------------------------------------

PIPELINE = """
import gristmill as gm

events = gm.source(
    "events", "data/*.parquet", columns={{"id": "BIGINT", "ts": "TIMESTAMP", "amount": "DOUBLE"}}
)
daily = gm.table(
    "daily",
    sql="select cast(ts as date) as day, count(*) as n, sum(amount) as total "
    "from events group by 1",
    partitions=gm.daily("day", start="{start}", batch={batch}, upstream={{"events": "ts"}}),
)
"""


def make_data(folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    n = DAYS * ROWS_PER_DAY
    step = 86400 * DAYS / n
    start = datetime(START.year, START.month, START.day)
    ts = [start + timedelta(seconds=i * step) for i in range(n)]
    table = pa.table({"id": list(range(n)), "ts": ts, "amount": [float(i % 97) for i in range(n)]})
    path = folder / "events.parquet"
    pq.write_table(table, path)
    return path


def w_backfill_gristmill(batch: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        make_data(root / "data")
        (root / "gristmill.toml").write_text('name = "bf"\n')
        (root / "pipeline.py").write_text(PIPELINE.format(start=START.isoformat(), batch=batch))
        gm("run", "events", "-p", str(root))
        last = (START + timedelta(days=DAYS - 1)).isoformat()
        start = time.perf_counter()
        out = gm(
            "backfill",
            "daily",
            "--from",
            START.isoformat(),
            "--to",
            last,
            "-p",
            str(root),
            "--json",
        )
        seconds = time.perf_counter() - start
        doc = json.loads(out.stdout)
        assert doc["summary"]["status"] == "success", doc
        import pyarrow as pa
        from deltalake import DeltaTable

        table = pa.table(DeltaTable(str(root / "lake" / "daily")).to_pyarrow_table())
        rows = (table.num_rows, sum(table["n"].to_pylist()))
        assert rows == (DAYS, DAYS * ROWS_PER_DAY), rows
        again = time.perf_counter()
        dry = gm(
            "backfill",
            "daily",
            "--from",
            START.isoformat(),
            "--to",
            last,
            "--dry-run",
            "-p",
            str(root),
            "--json",
        )
        plan_s = time.perf_counter() - again
        todo = [t for t in json.loads(dry.stdout)["partitions"] if t["action"] == "build"]
        assert todo == []
    return {"seconds": seconds, "plan_s": plan_s}


def _dagster_assets(data: Path, out: Path, single_run: bool):  # noqa: ANN202
    import dagster as dg
    import duckdb

    partitions = dg.DailyPartitionsDefinition(
        start_date=START.isoformat(), end_date=(START + timedelta(days=DAYS)).isoformat()
    )

    @dg.asset(
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run() if single_run else None,
    )
    def daily(context) -> None:  # noqa: ANN001 - Dagster resolves the hint at runtime
        window = context.partition_time_window
        lo, hi = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
        con = duckdb.connect()
        table = con.sql(
            f"select cast(ts as date) as day, count(*) as n, sum(amount) as total "
            f"from read_parquet('{data}') where ts >= '{lo}' and ts < '{hi}' group by 1"
        ).fetch_arrow_table()
        # one file per partition, replaced on rerun: what a partitioned IO manager does
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        for key in context.partition_keys:
            day = date.fromisoformat(key)
            part = table.filter(pc.equal(table["day"], day))
            pq.write_table(part, out / f"{key}.parquet")

    return partitions, daily


def _dagster_setup(tmp: Path, single_run: bool):  # noqa: ANN202
    data = make_data(tmp / "data")
    out = tmp / "out"
    out.mkdir()
    partitions, daily = _dagster_assets(data, out, single_run)
    return partitions, daily, out


def w_backfill_dagster_runs() -> dict:
    import dagster as dg

    with tempfile.TemporaryDirectory() as tmp:
        partitions, daily, out = _dagster_setup(Path(tmp), single_run=False)
        instance = dg.DagsterInstance.ephemeral(tempdir=tmp)
        keys = partitions.get_partition_keys()
        assert len(keys) == DAYS
        start = time.perf_counter()
        for key in keys:
            assert dg.materialize([daily], instance=instance, partition_key=key).success
        seconds = time.perf_counter() - start
        assert len(list(out.glob("*.parquet"))) == DAYS
    return {"seconds": seconds, "rss_mb": peak_rss_mb()}


def w_backfill_dagster_single() -> dict:
    import dagster as dg

    with tempfile.TemporaryDirectory() as tmp:
        partitions, daily, out = _dagster_setup(Path(tmp), single_run=True)
        job = dg.define_asset_job("backfill", selection=[daily], partitions_def=partitions)
        defs = dg.Definitions(assets=[daily], jobs=[job])
        instance = dg.DagsterInstance.ephemeral(tempdir=tmp)
        keys = partitions.get_partition_keys()
        start = time.perf_counter()
        result = defs.get_job_def("backfill").execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        seconds = time.perf_counter() - start
        assert result.success and len(list(out.glob("*.parquet"))) == DAYS
    return {"seconds": seconds, "rss_mb": peak_rss_mb()}


def bench_backfill(rounds: int = 3) -> str:
    runs: dict[str, list[float]] = {k: [] for k in ("g31", "g1", "dag_runs", "dag_single")}
    plan: list[float] = []
    for _ in range(rounds):
        r = worker("backfill_gristmill", "31")
        runs["g31"].append(r["seconds"])
        plan.append(r["plan_s"])
        runs["g1"].append(worker("backfill_gristmill", "1")["seconds"])
        runs["dag_single"].append(worker("backfill_dagster_single")["seconds"])
    runs["dag_runs"].append(worker("backfill_dagster_runs")["seconds"])  # minutes: once
    g = median(runs["g31"])
    rows = [
        ("gristmill backfill, batches of 31 days (CLI, end to end)", "g31"),
        ("gristmill backfill, one day per query and commit (batch=1)", "g1"),
        ("Dagster, one `materialize` per partition (warm process)", "dag_runs"),
        ("Dagster, single-run backfill of the range", "dag_single"),
    ]
    table = "\n".join(
        f"| {label} | {median(runs[key]):.2f} | {median(runs[key]) / g:.1f}x | "
        f"{', '.join(f'{v:.2f}' for v in runs[key])} |"
        for label, key in rows
    )
    ratio = median(runs["dag_runs"]) / g
    return (
        f"### (b) Backfill of {DAYS} daily partitions\n\n"
        f"A Parquet file of {DAYS * ROWS_PER_DAY:,} events ({ROWS_PER_DAY} a day); the "
        "partitioned table counts and sums them per day. gristmill: `gristmill backfill "
        "daily --from 2025-01-01 --to 2025-12-31` as a process, each day recorded on its "
        "own in the catalog. Dagster: a daily-partitioned asset doing the same query per "
        "partition with DuckDB, writing a Parquet file per day; its daemon launches about "
        "one run per second (dagster#28998), so one `materialize` per partition in a warm "
        "process is a lower bound of its backfill.\n\n"
        "| contender | seconds | vs gristmill | per round |\n|---|---:|---:|---|\n"
        f"{table}\n\n"
        f"Planning the same range again (`--dry-run`, all {DAYS} fresh): "
        f"{median(plan):.2f} s. Target ≥ 10x Dagster's per-partition backfill: "
        f"{'met' if ratio >= 10 else 'not met'} ({ratio:.0f}x).\n"
    )


# ---- (c) tick to run start ------------------------------------------------------------

TICKS = """
import gristmill as gm

events = gm.source("events", "data/*.csv", columns={"id": "BIGINT"})
every_minute = gm.schedule("every_minute", cron="* * * * *", select="events")
arrivals = gm.sensor("arrivals", on=gm.new_files("events"), select="events", min_interval="0s")
"""


def w_tick() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        (root / "data").mkdir(parents=True)
        (root / "gristmill.toml").write_text('name = "tick"\n')
        (root / "pipeline.py").write_text(TICKS)
        (root / "data" / "0.csv").write_text("id\n0\n")
        gm("run", "-p", str(root))
        daemon = subprocess.Popen(
            [*GM, "scheduler", "--interval", "0.2", "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2)
            sensor = []
            for i in range(1, 6):
                seen = {r["run_id"] for r in _runs_of(root, "sensor:arrivals")}
                staged = root / f"{i}.tmp"  # written outside the glob, then moved in whole
                staged.write_text(f"id\n{i}\n")
                dropped = datetime.now(UTC)
                staged.replace(root / "data" / f"{i}.csv")
                run = _wait_run(
                    root,
                    lambda r, seen=seen: (
                        r["requested_by"] == "sensor:arrivals" and r["run_id"] not in seen
                    ),
                )
                started = datetime.fromisoformat(run["started_at"])
                sensor.append((started - dropped).total_seconds())
                time.sleep(1)
            run = _wait_run(root, lambda r: r["requested_by"] == "schedule:every_minute", 90)
            tick = datetime.fromisoformat(run["params"]["tick"])
            schedule = (datetime.fromisoformat(run["started_at"]) - tick).total_seconds()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
    return {"sensor_s": sensor, "schedule_s": schedule}


def _runs_of(root: Path, who: str) -> list[dict]:
    out = gm("runs", "--limit", "100", "-p", str(root), "--json")
    return [r for r in json.loads(out.stdout) if r["requested_by"] == who and r["started_at"]]


def _wait_run(root: Path, match, timeout: float = 30) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = gm("runs", "--limit", "100", "-p", str(root), "--json")
        found = [r for r in json.loads(out.stdout) if r["started_at"] and match(r)]
        if found:
            return found[0]
        time.sleep(0.1)
    raise RuntimeError("no run started")


def bench_tick() -> str:
    r = worker("tick")
    sensor = r["sensor_s"]
    worst = max(*sensor, r["schedule_s"])
    return (
        "### (c) Tick to run start\n\n"
        "A `gristmill scheduler --interval 0.2` runs; the time from an every-minute "
        "schedule's tick, and from a file dropped for a `new_files` sensor, to the "
        "`started_at` of the run it queued (each run in a process of its own).\n\n"
        f"| trigger | seconds |\n|---|---:|\n"
        f"| schedule tick | {r['schedule_s']:.2f} |\n"
        f"| sensor, file dropped (median of {len(sensor)}) | {median(sensor):.2f} "
        f"({', '.join(f'{v:.2f}' for v in sensor)}) |\n\n"
        f"Target ≤ 1 s: {'met' if worst <= 1 else 'not met'} (worst {worst:.2f} s).\n"
    )


# ---- (d) CLI responsiveness -----------------------------------------------------------


def bench_cli(repeats: int = 7) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        gm("init", str(root), "--scale", "small")
        gm("run", "-p", str(root))
        helps, noops = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            gm("--help")
            helps.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = gm("run", "-p", str(root), "--json")
            noops.append(time.perf_counter() - start)
            assert json.loads(out.stdout)["summary"]["status"] == "noop"
    h, n = median(helps), median(noops)
    return (
        "### (d) CLI responsiveness\n\n"
        f"Wall time of a process, median of {repeats}, on the churn example (small).\n\n"
        "| command | seconds | target |\n|---|---:|---:|\n"
        f"| `gristmill --help` | {h:.2f} | ≤ 0.3 ({'met' if h <= 0.3 else 'not met'}) |\n"
        f"| no-op `gristmill run` | {n:.2f} | ≤ 0.5 ({'met' if n <= 0.5 else 'not met'}) |\n"
    )


def previous_parts() -> dict[str, str]:
    """The subsections of the last orchestration section, each marked with when it was
    measured, by part name."""
    import re

    text = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").exists() else ""
    found = re.search(r"<!-- orchestration:start -->(.*?)<!-- orchestration:end -->", text, re.S)
    if not found:
        return {}
    stamp = re.search(r"_measured ([^_]*UTC)", found.group(1))
    when = stamp.group(1) if stamp else "an earlier run"
    names = {"(a)": "chain", "(b)": "backfill", "(c)": "tick", "(d)": "cli"}
    out = {}
    for chunk in re.split(r"(?=^### \()", found.group(1), flags=re.M)[1:]:
        body = "\n".join(
            line for line in chunk.splitlines() if not line.startswith(("_measured", "<!--"))
        ).rstrip()
        if "_(kept from" not in body:
            body += f"\n\n_(kept from the run of {when})_"
        out[names[chunk[4:7]]] = body + "\n"
    return out


def main() -> None:
    if dispatch_worker(globals()):
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="chain,backfill,tick,cli")
    args = parser.parse_args()
    parts = {"chain": bench_chain, "backfill": bench_backfill, "tick": bench_tick, "cli": bench_cli}
    chosen = [p for p in args.only.split(",") if p]
    fresh = {p: parts[p]() for p in chosen}
    kept = previous_parts()  # parts not run this time keep their last figures and date
    order = ["chain", "backfill", "tick", "cli"]
    sections = [fresh[p] if p in fresh else kept[p] for p in order if p in fresh or p in kept]
    write_section(
        "orchestration",
        "## Orchestration (`benchmarks/orchestration.py`)\n\n" + "\n".join(sections),
    )
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    main()
