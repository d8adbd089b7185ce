"""Drift: gristmill's drift statistics vs Evidently's DataDriftPreset, same data, same run.

A reference and a current sample of 20 columns (15 numeric, 5 categorical; 100k and 1M
rows each) are written to Parquet once. Seven columns drift in the current sample (a
shifted mean, a wider spread, a higher count rate, more nulls, a channel mix that moves,
a new country, a merchant mix that moves); the other thirteen are drawn afresh from the
reference's distribution.

- gristmill: ``execution.monitoring.drift.findings`` over ``column_pairs`` — what every
  drift monitor calls — with the DuckDB engine scanning the two Parquet files one column
  pair at a time: per column PSI, Jensen-Shannon
  distance, KS with its p-value, Wasserstein (raw and normalized) or chi-square with its
  p-value and the new-category share, and both null rates;
- Evidently (its own venv, ``benchmarks/requirements-evidently.txt``):
  ``Report([DataDriftPreset()]).run(current, reference)`` over the same files read with
  ``pandas.read_parquet``; for more than 1,000 rows it computes one statistic per column
  (normalized Wasserstein for numeric, Jensen-Shannon for categorical).

Each run is a fresh process; the clock runs from reading the files to having every
column's result (imports are not timed, their memory is in the peak). Runs are
interleaved so the machine's drift hits both. Both sides' normalized Wasserstein and
Jensen-Shannon values are compared, and so are the columns each calls drifted by
Evidently's rule (value > 0.1).

    python benchmarks/monitoring.py [--repeats 3] [--rows 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from results import peak_rss_mb, run_worker

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data" / "monitoring"
EVIDENTLY_PY = HERE / ".venv-evidently" / "bin" / "python"
NUMERIC = 15
CATEGORICAL = 5
RULE = 0.1  # Evidently's default threshold for both of its statistics


def files(rows: int) -> tuple[Path, Path]:
    return DATA / f"{rows}" / "reference.parquet", DATA / f"{rows}" / "current.parquet"


def run(python: Path | str, name: str, *args: str) -> dict:
    return run_worker(__file__, name, *args, python=python)


# ---- data (not timed) -------------------------------------------------------------------


def w_prepare(rows: str) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = int(rows)
    reference_path, current_path = files(n)
    if reference_path.exists() and current_path.exists():
        return {"rows": n, "made": False}
    reference_path.parent.mkdir(parents=True, exist_ok=True)
    countries = [f"c{i:02d}" for i in range(20)]
    merchants = [f"m{i:02d}" for i in range(50)]

    def sample(seed: int, drifted: bool) -> pa.Table:
        rng = np.random.default_rng(seed)
        columns: dict[str, pa.Array] = {}
        for i in range(NUMERIC):
            kind = i % 4
            if kind == 0:
                shift = 0.3 if drifted and i == 0 else 0.0
                values = rng.normal(10.0 + shift, 1.0, n)
            elif kind == 1:
                sigma = 1.5 if drifted and i == 1 else 1.0
                values = rng.lognormal(3.0, sigma, n)
            elif kind == 2:
                rate = 4.0 if drifted and i == 2 else 3.0
                values = rng.poisson(rate, n).astype(np.float64)
            else:
                values = rng.uniform(0.0, 100.0, n)
            null_share = 0.05 if drifted and i == 3 else 0.01
            mask = rng.random(n) < null_share
            columns[f"num_{i:02d}"] = pa.array(values, mask=mask)
        channel_p = [0.2, 0.5, 0.2, 0.1] if drifted else [0.4, 0.3, 0.2, 0.1]
        columns["channel"] = pa.array(
            rng.choice(["web", "mobile", "store", "phone"], n, p=channel_p)
        )
        country = rng.choice(countries, n)
        if drifted:  # a country the reference never had takes 3% of the rows
            country[rng.random(n) < 0.03] = "new"
        columns["country"] = pa.array(country)
        columns["plan"] = pa.array(rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]))
        columns["device"] = pa.array(rng.choice([f"d{i}" for i in range(6)], n))
        weights = np.arange(1, 51, dtype=np.float64)
        if drifted:
            weights = weights[::-1]
        columns["merchant"] = pa.array(rng.choice(merchants, n, p=weights / weights.sum()))
        return pa.table(columns)

    pq.write_table(sample(1, drifted=False), reference_path)
    pq.write_table(sample(2, drifted=True), current_path)
    return {"rows": n, "made": True}


# ---- contenders -------------------------------------------------------------------------


def w_gristmill(rows: str) -> dict:
    import tempfile

    from gristmill.definitions.monitors import DEFAULT_DRIFT
    from gristmill.execution.engines.duckdb.engine import DuckDBEngine
    from gristmill.execution.monitoring.drift import column_pairs, findings

    reference_path, current_path = files(int(rows))
    base = peak_rss_mb()
    engine = DuckDBEngine(temp_directory=Path(tempfile.mkdtemp()))
    start = time.perf_counter()
    with engine.session() as session:  # as a drift monitor reads: one column pair at a time
        session.register_parquet("reference", [str(reference_path)])
        session.register_parquet("current", [str(current_path)])
        names = [name for name, _type in session.columns("reference")]
        results, _charts = findings(
            column_pairs(session, "reference", "current", names), DEFAULT_DRIFT
        )
    done = time.perf_counter()
    by_column: dict[str, dict[str, float]] = {}
    for f in results:
        by_column.setdefault(f.subject, {})[f.statistic] = f.value
    comparable = {
        c: v["wasserstein_norm"] if "wasserstein_norm" in v else v["jensenshannon"]
        for c, v in by_column.items()
    }
    return {
        "s": done - start,
        "rss_mb": peak_rss_mb(),
        "base_mb": base,
        "statistics": len(results),
        "values": comparable,
        "alerts": sorted({f.subject for f in results if f.state.value == "alert"}),
    }


def w_evidently(rows: str) -> dict:
    import pandas as pd
    from evidently import Report
    from evidently import __version__ as version
    from evidently.presets import DataDriftPreset

    reference_path, current_path = files(int(rows))
    base = peak_rss_mb()
    start = time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    loaded = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    result = snapshot.dict()
    done = time.perf_counter()
    values = {
        m["config"]["column"]: float(m["value"])
        for m in result["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    return {
        "s": done - start,
        "compute_s": done - loaded,
        "rss_mb": peak_rss_mb(),
        "base_mb": base,
        "statistics": len(values),
        "values": values,
        "evidently": version,
    }


# ---- driver -----------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        print(json.dumps(globals()[f"w_{sys.argv[2]}"](*sys.argv[3:])))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    if not EVIDENTLY_PY.exists():
        sys.exit("create the Evidently env first: make benchmarks/.venv-evidently/.installed")
    measured: dict[int, dict[str, list[dict]]] = {}
    for rows in args.rows:
        print("prepare:", run(sys.executable, "prepare", str(rows)), flush=True)
        measured[rows] = {"gristmill": [], "evidently": []}
        for i in range(args.repeats):
            measured[rows]["gristmill"].append(run(sys.executable, "gristmill", str(rows)))
            measured[rows]["evidently"].append(run(EVIDENTLY_PY, "evidently", str(rows)))
            print(rows, i, {k: round(v[-1]["s"], 2) for k, v in measured[rows].items()}, flush=True)
    write(measured, args.repeats)


def _seconds(runs: list[dict]) -> str:
    return ", ".join(f"{r['s']:.2f}" for r in runs)


def write(measured: dict[int, dict[str, list[dict]]], repeats: int) -> None:
    sys.path.insert(0, str(HERE))
    from results import median, write_section

    lines = []
    checks = []
    for rows, runs in measured.items():
        g, e = runs["gristmill"], runs["evidently"]
        gs, es = median([r["s"] for r in g]), median([r["s"] for r in e])
        gm, em = median([r["rss_mb"] for r in g]), median([r["rss_mb"] for r in e])
        gb, eb = median([r["base_mb"] for r in g]), median([r["base_mb"] for r in e])
        lines.append(
            f"| {rows:,} | gristmill | {gs:.2f} "
            f"| 1.0x | {gm:,.0f} | {gm - gb:,.0f} | {g[0]['statistics']} |"
        )
        lines.append(
            f"| {rows:,} | Evidently | {es:.2f} "
            f"| {es / gs:.1f}x | {em:,.0f} | {em - eb:,.0f} | {e[0]['statistics']} |"
        )
        ours, theirs = g[0]["values"], e[0]["values"]
        reading = median([r["s"] - r["compute_s"] for r in e])
        gap = max(abs(ours[c] - theirs[c]) for c in theirs)
        drifted_ours = sorted(c for c in theirs if ours[c] > RULE)
        drifted_theirs = sorted(c for c in theirs if theirs[c] > RULE)
        checks.append(
            f"- {rows:,} rows: speed {es / gs:.1f}x, memory {gm / em:.2f} of Evidently's peak "
            f"({(gm - gb) / max(em - eb, 1):.2f} of its growth above imports); largest "
            f"difference of a shared value {gap:.1e}; drifted by Evidently's rule (> {RULE}): "
            f"gristmill {', '.join(drifted_ours) or 'none'} — Evidently "
            f"{', '.join(drifted_theirs) or 'none'}"
            f" ({'the same' if drifted_ours == drifted_theirs else 'DIFFERENT'}); "
            f"gristmill's default thresholds alert on {', '.join(g[0]['alerts']) or 'none'}.\n"
            f"  Evidently's reading of the files: {reading:.2f} s. "
            f"All runs (s): gristmill {_seconds(g)}; Evidently {_seconds(e)}."
        )
    version = next(iter(measured.values()))["evidently"][0]["evidently"]
    body = f"""## Drift (`benchmarks/monitoring.py`)

Reference and current samples of 20 columns (15 numeric, 5 categorical), seven of them
drifted; median of {repeats} interleaved runs, each in a fresh process. Time = reading both
Parquet files + every column's drift (imports not timed; Evidently's share for reading
with pandas is in the notes below). gristmill reads as its drift monitors do: the DuckDB
engine scans one column of each side at a time.
Peak = the process's peak RSS, imports included; "growth" = peak minus the RSS after
imports. gristmill computes every statistic of every column (PSI, Jensen-Shannon, KS + p,
Wasserstein raw and normalized, or chi-square + p and the new-category share, and the
null rates); Evidently {version}'s DataDriftPreset one per column.

| rows per side | contender | time (s) | vs gristmill | peak RSS (MB) | growth (MB) | statistics |
|---:|---|---:|---:|---:|---:|---:|
{chr(10).join(lines)}

{chr(10).join(checks)}

Target: at least 10x faster and at most a third of Evidently's memory.
"""
    write_section("monitoring", body)
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
