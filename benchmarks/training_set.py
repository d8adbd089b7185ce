"""Point-in-time training set: gristmill vs Feast's get_historical_features, same data.

1M label rows (sampled from the large example's churn labels, their times moved off the
month starts) are joined to the large example's ``user_profile`` history (~6.8M rows,
TTL 45 days) by:

- gristmill: the ``bench_training`` training-set step (ASOF join in DuckDB over the Delta
  versions, written as a new Delta version), run in a fresh process;
- Feast 0.67: ``get_historical_features(...).to_df()`` with the file (dask) offline
  store over the same rows exported to Parquet, in its own virtualenv
  (``benchmarks/requirements-feast.txt``; Feast pins pandas < 3, the package pins 3.1).

Both sides report rows returned, label rows without features and a checksum of a feature
over the matched rows, so the results are shown to be the same join.

    python benchmarks/training_set.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from results import peak_rss_mb, run_worker

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
LARGE = DATA / "large"
FEAST_DIR = DATA / "feast"
FEAST_PY = HERE / ".venv-feast" / "bin" / "python"
LABELS = 1_000_000
TTL_DAYS = 45

BENCH_MODULE = f'''
import gristmill as gm

bench_labels = gm.source(
    "bench_labels", "data/bench_labels/*.parquet",
    columns={{"user_id": "VARCHAR", "label_ts": "TIMESTAMP", "churned": "INTEGER"}},
)
bench_training = gm.training_set(
    "bench_training", labels="bench_labels", entity="user_id", timestamp="label_ts",
    label="churned", features=[gm.features("user_profile", ttl="{TTL_DAYS}d")],
)
'''


def parquet(files: list[str]) -> str:
    """read_parquet over a file list (views cannot take prepared parameters)."""
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"


def run(python: Path | str, name: str, *args: str) -> dict:
    return run_worker(__file__, name, *args, python=python)


# ---- setup (not timed) ------------------------------------------------------------------


def w_prepare() -> dict:
    sys.path.insert(0, str(HERE))
    import pipeline

    from gristmill.workspace import Workspace

    pipeline.w_prepare("large")  # generates and ingests the large example once
    (LARGE / "bench_training.py").write_text(BENCH_MODULE)
    ws = Workspace.open(LARGE)
    outcome = ws.run(["churn_labels", "user_profile"])
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    labels_file = LARGE / "data" / "bench_labels" / "labels.parquet"
    labels_file.parent.mkdir(parents=True, exist_ok=True)
    import duckdb

    con = duckdb.connect()
    labels = ws.lake.parquet_files("churn_labels", ws.catalog.latest("churn_labels").version)
    con.execute(f"create view churn_labels as select * from {parquet(labels)}")
    # 1M labels; times moved into the month (0-27 days, some hours) so they rarely
    # coincide with a profile snapshot, as real label times would not.
    con.execute(
        f"""
        copy (
            select user_id,
                label_ts + to_days(cast(hash(user_id, label_ts) % 28 as integer))
                         + to_hours(cast(hash(label_ts, user_id) % 24 as integer)) as label_ts,
                churned
            from churn_labels
            order by hash(user_id, label_ts, 'sample')
            limit {LABELS}
        ) to '{labels_file}' (format parquet)
        """
    )
    outcome = ws.run(["bench_labels"])
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    profile = ws.catalog.latest("user_profile")
    FEAST_DIR.mkdir(parents=True, exist_ok=True)
    files = ws.lake.parquet_files("user_profile", profile.version)
    con.execute(
        f"copy (select * from {parquet(files)}) to '{FEAST_DIR / 'user_profile.parquet'}' "
        "(format parquet)"
    )
    con.execute(
        f"copy (select user_id, label_ts as event_timestamp, churned "
        f"from read_parquet('{labels_file}')) to '{FEAST_DIR / 'entity_df.parquet'}' "
        "(format parquet)"
    )
    return {"labels": ws.catalog.latest("bench_labels").rows, "profile_rows": profile.rows}


# ---- contenders -------------------------------------------------------------------------


def w_gristmill() -> dict:
    from gristmill.workspace import Workspace

    ws = Workspace.open(LARGE)
    start = time.perf_counter()
    outcome = ws.run(["bench_training"], force=["bench_training"])
    seconds = time.perf_counter() - start
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    m = ws.catalog.latest("bench_training")
    import duckdb

    con = duckdb.connect()
    files = ws.lake.parquet_files("bench_training", m.version)
    con.execute(f"create view t as select * from {parquet(files)}")
    ((rows, matched, checksum),) = con.execute(
        "select count(*), count(amount_sum_90d), round(sum(amount_sum_90d), 2) from t"
    ).fetchall()
    return {
        "s": seconds,
        "rows": rows,
        "matched": matched,
        "checksum": checksum,
        "missing": m.stats["missing"]["user_profile"],
        "rss_mb": peak_rss_mb(),
    }


def w_model() -> dict:
    """Training and batch scoring the churn model on the large example (gristmill only)."""
    from gristmill.workspace import Workspace

    ws = Workspace.open(LARGE)
    outcome = ws.run(["+churn_training"])  # the training set, built once (not timed)
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    start = time.perf_counter()
    outcome = ws.models.train("churn")
    train_s = time.perf_counter() - start
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    version = ws.models.version("churn")
    start = time.perf_counter()
    scored = ws.models.score("churn", table="user_profile", model=version.version)
    score_s = time.perf_counter() - start
    return {
        "train_s": train_s,
        "train_rows": version.details["split"]["train_rows"],
        "test_rows": version.details["split"]["test_rows"],
        "roc_auc": version.metrics["roc_auc"],
        "score_s": score_s,
        "scored_rows": scored.rows,
        "rss_mb": peak_rss_mb(),
    }


def w_score() -> dict:
    """Batch scoring alone, in a fresh process, for its peak memory."""
    from gristmill.workspace import Workspace

    ws = Workspace.open(LARGE)
    start = time.perf_counter()
    scored = ws.models.score("churn", table="user_profile", model="latest")
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    hwm = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM"))
    return {"s": seconds, "rows": scored.rows, "rss_mb": hwm / 1024}


def w_feast() -> dict:
    """Runs in the Feast virtualenv: only feast, pandas and pyarrow here."""
    from datetime import timedelta

    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, FileSource

    repo = FEAST_DIR / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\nregistry: registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: online.db\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(repo))
    user = Entity(name="user", join_keys=["user_id"])
    source = FileSource(path=str(FEAST_DIR / "user_profile.parquet"), timestamp_field="as_of")
    view = FeatureView(
        name="user_profile", entities=[user], ttl=timedelta(days=TTL_DAYS), source=source
    )
    store.apply([user, view])
    features = [f"user_profile:{f.name}" for f in store.get_feature_view("user_profile").features]
    entity_df = pd.read_parquet(FEAST_DIR / "entity_df.parquet")
    start = time.perf_counter()
    df = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    seconds = time.perf_counter() - start
    return {
        "s": seconds,
        "rows": len(df),
        "matched": int(df["amount_sum_90d"].notna().sum()),
        "checksum": round(float(df["amount_sum_90d"].sum()), 2),
        "missing": int(df["amount_sum_90d"].isna().sum()),
        "features": len(features),
        "rss_mb": peak_rss_mb(),
        "feast": __import__("feast").__version__,
    }


# ---- report -----------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        print(json.dumps(globals()[f"w_{sys.argv[2]}"](*sys.argv[3:])))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fill", action="store_true", help="only the online-store fill")
    args = parser.parse_args()
    if not FEAST_PY.exists():
        sys.exit("create the Feast env first: make bench-feast-env")
    setup = run(sys.executable, "prepare")
    fill = {
        "gristmill": run(sys.executable, "gristmill_fill"),
        "feast": run(FEAST_PY, "feast_materialize"),
    }
    write_fill(fill["gristmill"], fill["feast"])
    if args.fill:
        return
    print("setup:", setup, flush=True)
    results: dict[str, list[dict]] = {"gristmill": [], "feast": []}
    for i in range(args.repeats):  # interleaved, so drift in the machine hits both
        results["gristmill"].append(run(sys.executable, "gristmill"))
        results["feast"].append(run(FEAST_PY, "feast"))
        print(i, {k: v[-1] for k, v in results.items()}, flush=True)
    model = run(sys.executable, "model")
    score = run(sys.executable, "score")
    print("model:", model, "score:", score, flush=True)
    write(setup, results, args.repeats, model, score)


def write(
    setup: dict, results: dict[str, list[dict]], repeats: int, model: dict, score: dict
) -> None:
    sys.path.insert(0, str(HERE))
    from results import median, write_section

    g, f = results["gristmill"], results["feast"]
    gs, fs = median([r["s"] for r in g]), median([r["s"] for r in f])
    lost = setup["labels"] - f[0]["rows"]
    body = f"""## Point-in-time training set (`benchmarks/training_set.py`)

{setup["labels"]:,} label rows joined to `user_profile` of the large example
({setup["profile_rows"]:,} rows, {f[0]["features"]} features, TTL {TTL_DAYS} days); median of
{repeats} interleaved runs, each in a fresh process. gristmill's time includes writing the
training set as a new Delta version; Feast's is `get_historical_features(...).to_df()`
(file/dask offline store, Feast {f[0]["feast"]}) with `apply` done before the clock starts.

| | time (s) | vs gristmill | peak RSS (MB) | rows returned | label rows without features | matched rows | checksum (sum amount_sum_90d) |
|---|---:|---:|---:|---:|---:|---:|---:|
| gristmill | {gs:.2f} | 1.0x | {median([r["rss_mb"] for r in g]):,.0f} | {g[0]["rows"]:,} | {g[0]["missing"]:,} (kept, counted) | {g[0]["matched"]:,} | {g[0]["checksum"]:,} |
| Feast | {fs:.2f} | {fs / gs:.1f}x | {median([r["rss_mb"] for r in f]):,.0f} | {f[0]["rows"]:,} | {f[0]["missing"]:,} | {f[0]["matched"]:,} | {f[0]["checksum"]:,} |

All runs (s): gristmill {", ".join(f"{r['s']:.2f}" for r in g)}; Feast {", ".join(f"{r['s']:.2f}" for r in f)}.
Target: at least 20x faster than Feast — measured {fs / gs:.1f}x.
Feast returned {f[0]["rows"]:,} of {setup["labels"]:,} label rows ({lost:,} lost,
{lost / setup["labels"]:.1%}); gristmill returned every label row.

### Training and batch scoring on the large example (gristmill only, one run)

- `train churn` (LightGBM, 150 rounds, time split): {model["train_rows"]:,} training rows,
  {model["test_rows"]:,} test rows, 200 bootstrap resamples for the intervals:
  **{model["train_s"]:.1f} s** (ROC AUC {model["roc_auc"]["value"]:.4f},
  95% interval {model["roc_auc"]["low"]:.4f}–{model["roc_auc"]["high"]:.4f}).
- `score churn --table user_profile` (each user's latest of {setup["profile_rows"]:,} rows,
  streamed in 65,536-row batches into a new Delta version): {score["rows"]:,} rows in
  **{score["s"]:.1f} s**, peak RSS of the process **{score["rss_mb"]:,.0f} MB**
  (DuckDB's `memory_limit` in the example is 8 GB; scoring holds a batch or two).
"""
    write_section("training_set", body)
    print((HERE / "RESULTS.md").read_text())


def w_feast_materialize() -> dict:
    """Feast venv: fill its SQLite online store with the latest profile per user."""
    from datetime import datetime

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(FEAST_DIR / "repo"))
    start = time.perf_counter()
    store.materialize(start_date=datetime(2025, 1, 1), end_date=datetime(2026, 12, 31))
    seconds = time.perf_counter() - start
    import sqlite3

    db = sqlite3.connect(FEAST_DIR / "repo" / "online.db")
    (table,) = [
        r[0]
        for r in db.execute("select name from sqlite_master where type='table'")
        if "user_profile" in r[0]
    ]
    entities = db.execute(f'select count(distinct entity_key) from "{table}"').fetchone()[0]
    return {"s": seconds, "entities": entities, "rss_mb": peak_rss_mb()}


def write_fill(g: dict, f: dict) -> None:
    sys.path.insert(0, str(HERE))
    from results import write_section

    body = f"""## Filling the online store (`benchmarks/training_set.py`)

The latest `user_profile` row of each of the large example's users into an empty SQLite
online store, one run each (setup as above): gristmill's `sync_online` (a full fill) vs
`feast materialize` of the same rows into Feast's SQLite online store (Feast {f.get("feast", "0.67.0")}).

| | time (s) | vs gristmill | peak RSS (MB) | entities |
|---|---:|---:|---:|---:|
| gristmill | {g["s"]:.1f} | 1.0x | {g["rss_mb"]:,.0f} | {g["entities"]:,} |
| Feast | {f["s"]:.1f} | {f["s"] / g["s"]:.0f}x | {f["rss_mb"]:,.0f} | {f["entities"]:,} |

Target: at least 50x faster than Feast and under 2 GB.
"""
    write_section("online_fill", body)


def w_gristmill_fill() -> dict:
    """A full fill of gristmill's online store (SQLite) from the same user_profile."""
    from gristmill.workspace import Workspace

    ws = Workspace.open(LARGE)
    path = LARGE / ".gristmill" / "online.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    start = time.perf_counter()
    (sync,) = [s for s in ws.sync_online() if s.view == "user_profile"]
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    hwm = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM"))
    return {"s": seconds, "entities": sync.rows, "mode": sync.mode, "rss_mb": hwm / 1024}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
