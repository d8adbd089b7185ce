"""Database source benchmark (not a test). Run with `make bench-sources` or:

    benchmarks/.venv/bin/python benchmarks/sources.py [--rows 10000000] [--rounds 2]

N rows x 10 columns in a PostgreSQL table (the local server, database `test`, a schema of
its own, dropped afterwards), read into a table by:

- the floor: a hand-written ADBC -> Parquet copy (`fetch_record_batch` streamed into a
  `ParquetWriter`), no contract, no table format, no state;
- gristmill: `gm.database_source(..., cursor=("updated_at", "id"), primary_key="id")`, a
  full extraction into a Delta table, then incremental ones after 1% of the rows changed
  (the newest 1%, then 1% spread over the table);
- dlt: `sql_database` with its pyarrow backend into a Delta table on the filesystem (in
  its own venv, benchmarks/.venv-dlt).

Every contender runs in its own subprocess; rounds are interleaved.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results import dispatch_worker, median, peak_rss_mb, run_worker, write_section  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"
DLT_PYTHON = HERE / ".venv-dlt" / "bin" / "python"


def worker(name: str, *args: str, python: Path | str = sys.executable) -> dict:
    return run_worker(__file__, name, *args, python=python, timeout=3600)


def psql(sql: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(PG, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        cur.close()


def make_table(schema: str, rows: int) -> None:
    psql(f'CREATE SCHEMA "{schema}"')
    psql(
        f"""CREATE TABLE "{schema}".orders (
            id bigint PRIMARY KEY, customer text, country text, amount numeric(12, 2),
            score double precision, ratio double precision, items integer, paid boolean,
            ordered date, updated_at timestamptz NOT NULL)"""
    )
    psql(
        f"""INSERT INTO "{schema}".orders
        SELECT g, 'customer_' || (g % 100000), (ARRAY['de','fr','us','jp'])[g % 4 + 1],
               (g % 10000) / 100.0, random(), g / 7.0, g % 50, g % 3 = 0,
               date '2026-01-01' + (g % 300), now() - interval '1 day' + g * interval '1 ms'
        FROM generate_series(1, {rows}) g"""
    )
    # the cursor's index, as on any table read incrementally: without it the server scans
    # the whole table for the newest value and again for the rows past the watermark
    psql(f'CREATE INDEX ON "{schema}".orders (updated_at, id)')
    psql(f'ANALYZE "{schema}".orders')


# ---- workers ---------------------------------------------------------------------------


def w_floor(schema: str) -> dict:
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        rows = 0
        with pg.connect(PG) as conn:
            cur = conn.cursor()
            cur.execute(f'SELECT * FROM "{schema}".orders')
            reader = cur.fetch_record_batch()
            with pq.ParquetWriter(f"{tmp}/orders.parquet", reader.schema) as out:
                for batch in reader:
                    out.write_batch(batch)
                    rows += batch.num_rows
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": rows, "rss_mb": peak_rss_mb()}


def w_gristmill(schema: str) -> dict:
    from gristmill.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        root.mkdir()
        (root / "gristmill.toml").write_text('name = "bench"\n')
        (root / "pipeline.py").write_text(
            "import gristmill as gm\n"
            f'orders = gm.database_source("orders", url="{PG}", table="{schema}.orders", '
            'cursor=("updated_at", "id"), primary_key="id", lag="0s")\n'
        )
        start = time.perf_counter()
        outcome = Workspace.open(root).run()
        full = time.perf_counter() - start
        assert outcome.ok, outcome.result.steps[0].error
        rows = outcome.result.steps[0].rows
        timings, changed = {}, {}
        for label, where in (
            ("recent", f"id > {rows - rows // 100}"),  # the newest 1%: few files to rewrite
            ("spread", "id % 100 = 1"),  # 1% across the table: every file has one
        ):
            psql(
                f"""UPDATE "{schema}".orders SET amount = amount + 1, updated_at = now()
                    WHERE {where}"""
            )
            start = time.perf_counter()
            again = Workspace.open(root).run()
            timings[label] = time.perf_counter() - start
            assert again.ok and again.result.steps[0].mode == "merge"
            changed[label] = again.result.steps[0].rows_added
    return {
        "seconds": full,
        "rows": rows,
        "incremental_s": timings["recent"],
        "spread_s": timings["spread"],
        "changed": changed["recent"],
        "rss_mb": peak_rss_mb(),
    }


def w_dlt(schema: str) -> dict:
    import dlt
    from dlt.sources.sql_database import sql_table

    with tempfile.TemporaryDirectory() as tmp:
        table = sql_table(
            credentials=PG.replace("postgresql://", "postgresql+psycopg2://"),
            table="orders",
            schema=schema,
            backend="pyarrow",
            chunk_size=100_000,
        )
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{uuid.uuid4().hex[:6]}",
            destination=dlt.destinations.filesystem(f"file://{tmp}/lake"),
            dataset_name="bench",
            pipelines_dir=f"{tmp}/pipelines",
        )
        start = time.perf_counter()
        info = pipeline.run(table, table_format="delta")
        seconds = time.perf_counter() - start
        assert not info.has_failed_jobs
        rows = int(pipeline.last_trace.last_normalize_info.row_counts.get("orders", 0))
    return {"seconds": seconds, "rows": rows, "rss_mb": peak_rss_mb()}


# ---- the benchmark ---------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    contenders = ["floor", "gristmill"] + (["dlt"] if DLT_PYTHON.exists() else [])
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    for _ in range(args.rounds):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        make_table(schema, args.rows)  # fresh each round: the incremental run changes it
        try:
            for name in contenders:
                python = DLT_PYTHON if name == "dlt" else sys.executable
                runs[name].append(worker(name, schema, python=python))
        finally:
            psql(f'DROP SCHEMA "{schema}" CASCADE')
    floor = median([r["seconds"] for r in runs["floor"]])
    lines = []
    for name in contenders:
        seconds = median([r["seconds"] for r in runs[name]])
        rows = runs[name][0]["rows"]
        rate = rows / seconds / 1e6
        rss = median([r["rss_mb"] for r in runs[name]])
        per_round = ", ".join(f"{r['seconds']:.1f}" for r in runs[name])
        lines.append(
            f"| {name} | {seconds:.1f} | {per_round} | {rate:.2f} | {seconds / floor:.2f}x | "
            f"{rss:,.0f} |"
        )
    g = median([r["seconds"] for r in runs["gristmill"]])
    inc = median([r["incremental_s"] for r in runs["gristmill"]])
    spread = median([r["spread_s"] for r in runs["gristmill"]])
    changed = runs["gristmill"][0]["changed"]
    per_round = ", ".join(f"{r['incremental_s'] / r['seconds']:.1%}" for r in runs["gristmill"])
    verdict = [
        f"gristmill / floor: **{g / floor:.2f}x** (target ≤ 1.25x: "
        f"{'met' if g / floor <= 1.25 else 'not met'})."
    ]
    if "dlt" in runs:
        d = median([r["seconds"] for r in runs["dlt"]])
        verdict.append(
            f"dlt / gristmill: **{d / g:.1f}x** "
            f"(target ≥ 3x: {'met' if d / g >= 3 else 'not met'})."
        )
    verdict.append(
        f"Incremental after the newest 1% of the rows changed ({changed:,} rows merged): "
        f"{inc:.2f} s = **{inc / g:.1%}** of the full extraction (per round {per_round}; "
        "target ≤ 5%: "
        f"{'met' if inc / g <= 0.05 else 'not met'}); after 1% spread over the whole table: "
        f"{spread:.1f} s = {spread / g:.1%} (Delta's merge rewrites every file that holds a "
        "changed row, and here every file does)."
    )
    body = (
        "## Database sources\n\n"
        f"{args.rows:,} rows x 10 columns (bigint, 2 text, numeric(12,2), 2 double, int, bool, "
        "date, timestamptz) from the local PostgreSQL into a table; each contender in its own "
        f"process, {args.rounds} interleaved rounds, medians. The floor is ADBC -> Parquet with "
        "no table format; gristmill and dlt write Delta.\n\n"
        "| contender | seconds | per round | M rows/s | vs floor | peak RSS MB |\n"
        "|---|---:|---|---:|---:|---:|\n" + "\n".join(lines) + "\n\n" + " ".join(verdict) + "\n"
    )
    write_section("sources", body)
    print(body)


if __name__ == "__main__":
    if not dispatch_worker(globals()):
        main()
