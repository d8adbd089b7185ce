"""Partitioned tables and backfills, end to end through the CLI in real processes: only
missing, failed and stale partitions are built; an input's change stales only the
partitions its rows fall in; a backfill killed midway resumes with what remains."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from gristmill.definitions.partitions import Granularity, Partition, Partitioning, daily
from gristmill.errors import DefinitionError, InvalidInputError
from gristmill.workspace import Workspace
from tests.conftest import gm, gm_failed_json, gm_json, spawn, write_project

EVENTS = """
import gristmill as gm

events = gm.source(
    "events", "data/*.csv",
    columns={"id": "BIGINT", "ts": "TIMESTAMP", "region": "VARCHAR", "amount": "DOUBLE"},
)
daily = gm.table(
    "daily",
    sql="select cast(ts as date) as day, count(*) as n, sum(amount) as total "
        "from events group by 1",
    partitions=gm.daily("day", start="2025-10-01", batch=BATCH, upstream={"events": "ts"}),
)
"""


def csv_rows(start: datetime, count: int, step_hours: int = 5, first_id: int = 0) -> str:
    lines = ["id,ts,region,amount"]
    for i in range(count):
        at = start + timedelta(hours=step_hours * i)
        lines.append(f"{first_id + i},{at:%Y-%m-%d %H:%M:%S},{'eu' if i % 3 else 'us'},{i % 7}")
    return "\n".join(lines) + "\n"


def make(root: Path, batch: int = 31, module: str = EVENTS) -> Path:
    data = {"a.csv": csv_rows(datetime(2025, 10, 1), 300)}  # 2025-10-01 .. 2025-12-02
    return write_project(root, module=module.replace("BATCH", str(batch)), sql={}, data=data)


def expected_daily(root: Path) -> dict[date, tuple[int, float]]:
    """The daily totals computed straight from the CSV files by DuckDB."""
    rows = duckdb.sql(
        f"select cast(ts as date), count(*), sum(amount) from read_csv('{root}/data/*.csv') "
        "group by 1"
    ).fetchall()
    return {day: (n, total) for day, n, total in rows}


def built_daily(root: Path) -> dict[date, tuple[int, float]]:
    ws = Workspace.open(root)
    try:
        data = ws.read("daily").to_pylist()
    finally:
        ws.close()
    return {r["day"]: (r["n"], r["total"]) for r in data}


def plan(root: Path, *args: str) -> dict[str, str]:
    step = gm_json(root, "backfill", "daily", *args, "--dry-run")
    return {t["partition"]["key"]: t["action"] + ": " + t["reason"] for t in step["partitions"]}


def test_a_backfill_builds_only_what_is_missing_and_equals_a_direct_computation(
    tmp_path: Path,
) -> None:
    root = make(tmp_path / "p")
    gm_json(root, "run", "events")
    dry = plan(root, "--from", "2025-10", "--to", "2025-10")
    assert len(dry) == 31 and set(dry.values()) == {"build: never built"}
    ran = gm_json(root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-11-05")
    assert ran["summary"]["status"] == "success"
    runs = gm_json(root, "runs", "--kind", "backfill")
    assert [r["selection"] for r in runs] == ["daily 2025-10-01..2025-11-05"]
    want = {d: v for d, v in expected_daily(root).items() if d <= date(2025, 11, 5)}
    assert built_daily(root) == want and len(want) == 36

    again = plan(root, "--from", "2025-10", "--to", "2025-11-05")
    assert len(again) == 36 and all(v.startswith("skip: fresh") for v in again.values())
    noop = gm_json(root, "backfill", "daily", "--from", "2025-10", "--to", "2025-11-05")
    assert noop["summary"]["status"] == "noop"

    # a plain run brings the rest up to date: every day to yesterday, the 36 built skipped
    days = (datetime.now(UTC).date() - date(2025, 10, 1)).days
    step = gm_json(root, "run")["steps"][-1]
    assert step["name"] == "daily"
    assert step["reason"].startswith(f"partitions: {days - 36} of {days} to build")
    assert built_daily(root) == expected_daily(root)


def test_a_plain_run_builds_only_the_days_its_new_rows_touch(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    gm_json(root, "run")
    (root / "data" / "late.csv").write_text(
        "id,ts,region,amount\n9001,2025-10-07 08:00:00,eu,100\n"
    )
    ran = gm_json(root, "run")  # ingests the file, then plans daily again: one day
    step = next(s for s in ran["steps"] if s["name"] == "daily")
    assert "1 of" in step["reason"] and "2025-10-07: input events" in step["reason"]
    assert "planned again after its upstream built" in step["reason"]
    assert built_daily(root) == expected_daily(root)
    ws = Workspace.open(root)
    records = ws.catalog.partitions("daily")
    ws.close()
    rebuilt = {k for k, r in records.items() if r.run_id == ran["run_id"]}
    assert rebuilt == {"2025-10-07"}


def test_new_rows_stale_only_their_days_and_a_code_change_stales_all(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    gm_json(root, "run", "events")
    gm_json(root, "backfill", "daily", "--from", "2025-10", "--to", "2025-10")
    # each ingest's new rows go into the table's new files: two ingests, two narrow files
    (root / "data" / "late1.csv").write_text(
        "id,ts,region,amount\n9001,2025-10-07 23:59:00,eu,100\n"
    )
    gm_json(root, "run", "events")
    (root / "data" / "late2.csv").write_text("id,ts,region,amount\n9002,2025-10-20 00:00:00,us,5\n")
    gm_json(root, "run", "events")
    dry = plan(root, "--from", "2025-10", "--to", "2025-10")
    stale = {k for k, v in dry.items() if v.startswith("build")}
    assert stale == {"2025-10-07", "2025-10-20"}
    assert "changed rows in this partition" in dry["2025-10-07"]
    gm_json(root, "backfill", "daily", "--from", "2025-10", "--to", "2025-10")
    want = {d: v for d, v in expected_daily(root).items() if d.month == 10}
    assert built_daily(root) == want
    assert built_daily(root)[date(2025, 10, 7)][1] == want[date(2025, 10, 7)][1]

    module = (root / "pipeline.py").read_text().replace("sum(amount)", "sum(amount) * 2")
    (root / "pipeline.py").write_text(module)
    dry = plan(root, "--from", "2025-10", "--to", "2025-10")
    assert set(dry.values()) == {"build: code changed"}


FLAKY = """
import os, time
import pyarrow as pa
import gristmill as gm

events = gm.source(
    "events", "data/*.csv",
    columns={"id": "BIGINT", "ts": "TIMESTAMP", "region": "VARCHAR", "amount": "DOUBLE"},
)

@gm.table(partitions=gm.daily("day", start="2025-10-01", batch=BATCH, upstream={"events": "ts"}))
def daily(events: pa.Table, partition) -> pa.Table:
    import duckdb
    if os.environ.get("GM_SLOW"):
        time.sleep(float(os.environ["GM_SLOW"]))
    broken = os.environ.get("GM_BROKEN_DAY", "")
    if broken and broken in partition.keys:
        raise ValueError(f"no data feed for {broken}")
    return duckdb.sql(
        "select cast(ts as date) as day, count(*) as n, sum(amount) as total from events "
        f"where ts >= '{partition.start}' and ts < '{partition.end}' group by 1"
    ).arrow()
"""


def test_a_failed_partition_is_recorded_and_retried_alone(tmp_path: Path) -> None:
    root = make(tmp_path / "p", batch=1, module=FLAKY)
    gm_json(root, "run", "events")
    os.environ["GM_BROKEN_DAY"] = "2025-10-05"
    try:
        failed = gm_failed_json(
            root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-10-10"
        )
    finally:
        del os.environ["GM_BROKEN_DAY"]
    error = failed["steps"][0]["error"]["message"]
    assert "1 of 10 partition(s) failed, 9 built (up to v" in error
    assert "no data feed for 2025-10-05" in error
    dry = plan(root, "--from", "2025-10-01", "--to", "2025-10-10")
    todo = {k: v for k, v in dry.items() if v.startswith("build")}
    assert list(todo) == ["2025-10-05"] and "failed in run" in todo["2025-10-05"]
    assert "no data feed" in todo["2025-10-05"]
    gm_json(root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-10-10")
    want = {
        d: v
        for d, v in expected_daily(root).items()
        if date(2025, 10, 1) <= d <= date(2025, 10, 10)
    }
    assert built_daily(root) == want


@pytest.mark.slow
def test_a_backfill_killed_midway_resumes_with_only_the_rest(tmp_path: Path) -> None:
    root = make(tmp_path / "p", batch=1, module=FLAKY)
    gm_json(root, "run", "events")
    os.environ["GM_SLOW"] = "0.4"
    try:
        proc = spawn(root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-10-20")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [
                k
                for k, v in plan(root, "--from", "2025-10-01", "--to", "2025-10-20").items()
                if v.startswith("skip")
            ]
            if len(done) >= 4:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        del os.environ["GM_SLOW"]
    after_kill = plan(root, "--from", "2025-10-01", "--to", "2025-10-20")
    built = [k for k, v in after_kill.items() if v.startswith("skip")]
    assert 4 <= len(built) < 20
    assert built == sorted(after_kill)[: len(built)]  # built in order, the rest remains
    resumed = gm_json(root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-10-20")
    reason = resumed["steps"][0]["reason"]
    assert f"{20 - len(built)} of 20 to build" in reason
    want = {
        d: v
        for d, v in expected_daily(root).items()
        if date(2025, 10, 1) <= d <= date(2025, 10, 20)
    }
    assert built_daily(root) == want
    runs = gm_json(root, "runs", "--kind", "backfill")
    assert [r["status"] for r in runs] == ["success", "crashed"]


@pytest.mark.slow
def test_sigterm_stops_a_foreground_backfill_between_batches(tmp_path: Path) -> None:
    root = make(tmp_path / "p", batch=1, module=FLAKY)
    gm_json(root, "run", "events")
    os.environ["GM_SLOW"] = "0.4"
    try:
        proc = spawn(root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-10-31")
        deadline = time.monotonic() + 60
        while (
            len(
                [
                    v
                    for v in plan(root, "--from", "2025-10", "--to", "2025-10").values()
                    if v.startswith("skip")
                ]
            )
            < 3
        ):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        stopped_after = time.monotonic() - asked
    finally:
        del os.environ["GM_SLOW"]
    assert proc.returncode == 130
    assert stopped_after < 5  # the batch running ends, the next ones do not start
    [run] = gm_json(root, "runs", "--kind", "backfill")
    assert run["status"] == "cancelled"
    left = [
        k
        for k, v in plan(root, "--from", "2025-10", "--to", "2025-10").items()
        if v.startswith("build")
    ]
    assert 10 < len(left) < 31


@pytest.mark.slow
def test_a_cancelled_backfill_stops_between_batches(tmp_path: Path) -> None:
    root = make(tmp_path / "p", batch=1, module=FLAKY)
    gm_json(root, "run", "events")
    queued = gm_json(
        root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-10-31", "--queue"
    )
    assert queued["status"] == "queued" and queued["kind"] == "backfill"
    os.environ["GM_SLOW"] = "0.3"
    try:
        worker = spawn(root, "scheduler", "--once")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if gm_json(root, "runs", queued["run_id"])["status"] == "running":
                break
            time.sleep(0.2)
        time.sleep(1.5)
        assert gm(root, "cancel", queued["run_id"]).returncode == 0
        worker.communicate(timeout=120)
    finally:
        del os.environ["GM_SLOW"]
    info = gm_json(root, "runs", queued["run_id"])
    assert info["status"] == "cancelled"
    left = [
        k
        for k, v in plan(root, "--from", "2025-10", "--to", "2025-10").items()
        if v.startswith("build")
    ]
    assert 0 < len(left) < 31


STATIC = """
import gristmill as gm

events = gm.source(
    "events", "data/*.csv",
    columns={"id": "BIGINT", "ts": "TIMESTAMP", "region": "VARCHAR", "amount": "DOUBLE"},
)
by_region = gm.table(
    "by_region",
    sql="select region, count(*) as n from events group by 1",
    partitions=gm.static("region", ["eu", "us", "apac"]),
)
"""


def test_static_partitions_build_every_key_and_stale_per_key(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p", module=STATIC, sql={}, data={"a.csv": csv_rows(datetime(2025, 10, 1), 30)}
    )
    gm_json(root, "run")
    ws = Workspace.open(root)
    got = {r["region"]: r["n"] for r in ws.read("by_region").to_pylist()}
    ws.close()
    assert got == {"eu": 20, "us": 10}
    (root / "data" / "b.csv").write_text("id,ts,region,amount\n99,2025-10-02 00:00:00,us,1\n")
    gm_json(root, "run", "events")
    step = gm_json(root, "backfill", "by_region", "--dry-run")
    actions = {t["partition"]["key"]: t["action"] for t in step["partitions"]}
    assert actions == {"eu": "skip", "us": "build", "apac": "skip"}


def test_bad_backfill_input_is_a_clear_error(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    unpartitioned = gm(root, "backfill", "events")
    assert unpartitioned.returncode == 2 and "not partitioned" in unpartitioned.stderr
    assert "partitioned tables: daily" in unpartitioned.stderr
    unknown = gm(root, "backfill", "nope")
    assert unknown.returncode == 2 and "no table 'nope'" in unknown.stderr
    bad_date = gm(root, "backfill", "daily", "--from", "yesterday")
    assert bad_date.returncode == 2 and "--from 'yesterday' is not a date" in bad_date.stderr
    swapped = gm(root, "backfill", "daily", "--from", "2025-11", "--to", "2025-10", "--json")
    assert swapped.returncode == 2 and '"category": "invalid"' in swapped.stdout
    empty = gm(root, "backfill", "daily", "--from", "2024-01", "--to", "2024-03")
    assert (
        empty.returncode == 2 and "no partition of daily falls in 2024-01..2024-03" in empty.stderr
    )
    assert "its partitions: 2025-10-01 to" in empty.stderr
    blank = gm(root, "backfill", "daily", "--from", "")
    assert blank.returncode == 2 and "is not a date" in blank.stderr
    both = gm(root, "backfill", "daily", "--queue", "--dry-run")
    assert both.returncode == 2 and "pick one" in both.stderr
    for proc in (unpartitioned, unknown, bad_date, swapped, empty, blank, both):
        assert "Traceback" not in proc.stderr + proc.stdout
    assert gm_json(root, "runs") == []  # nothing was recorded


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('gm.daily("day", start="October")', "start='October' is not a date"),
        ('gm.daily("day", start="2025-10-01", batch=0)', "batch=0 must be a whole number"),
        ('gm.daily(42, start="2025-10-01")', "must be a column name"),
        ('gm.static("region", "eu")', "keys must be a non-empty list"),
        ('gm.static("region", ["eu", "e u"])', "invalid partition key"),
        ('gm.daily("day", start="2025-10-01", upstream=["events"])', "must map input names"),
        ('"daily"', "is not a partitioning"),
        ('gm.daily("day", start="2025-10-01", upstream={"nope": "ts"})', "which it does not read"),
    ],
)
def test_bad_partitions_are_load_errors_with_file_and_line(
    tmp_path: Path, call: str, message: str
) -> None:
    module = (
        "import gristmill as gm\n"
        'events = gm.source("events", "data/*.csv", columns={"ts": "TIMESTAMP"})\n'
        f'daily = gm.table("daily", sql="select ts from events", partitions={call})\n'
    )
    root = write_project(tmp_path / "p", module=module, sql={}, data={"a.csv": "ts\n"})
    proc = gm(root, "backfill", "daily", "--dry-run")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "pipeline.py:3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_partition_column_that_is_not_a_time_fails_the_step_with_a_hint(tmp_path: Path) -> None:
    module = EVENTS.replace("cast(ts as date) as day", "cast(id as varchar) as day")
    root = make(tmp_path / "p", module=module)
    gm_json(root, "run", "events")
    failed = gm_failed_json(root, "backfill", "daily", "--from", "2025-10-01", "--to", "2025-10-02")
    error = failed["steps"][0]["error"]
    assert "'day' is VARCHAR, not a date or a timestamp" in error["message"]
    assert "CAST(day AS DATE)" in error["hint"]


def test_calendar_of_partitions() -> None:
    by_day = daily("day", start="2025-10-30")
    now = datetime(2025, 11, 3, 8, tzinfo=UTC)
    assert [p.key for p in by_day.all(now)] == [
        "2025-10-30",
        "2025-10-31",
        "2025-11-01",
        "2025-11-02",
    ]
    assert by_day.latest(now) == [Partition("2025-11-02", date(2025, 11, 2), date(2025, 11, 3))]
    today = Partitioning("day", Granularity.DAILY, start=date(2025, 10, 30), end_offset=1)
    assert today.latest(now)[0].key == "2025-11-03"
    assert [p.key for p in by_day.between("2025-10", "2025-10", now)] == [
        "2025-10-30",
        "2025-10-31",
    ]
    by_month = Partitioning("m", Granularity.MONTHLY, start=date(2024, 11, 1))
    keys = [p.key for p in by_month.all(datetime(2025, 2, 10, tzinfo=UTC))]
    assert keys == ["2024-11", "2024-12", "2025-01"]
    assert by_month.parse_key("2024-12") == Partition(
        "2024-12", date(2024, 12, 1), date(2025, 1, 1)
    )
    with pytest.raises(InvalidInputError, match="not a monthly partition key"):
        by_month.parse_key("2024-12-05")
    assert by_day.sql_filter(by_day.all(now)[:2], "DATE") == (
        "(\"day\" >= '2025-10-30' AND \"day\" < '2025-11-01')"
    )
    assert "+00:00" in by_day.sql_filter(by_day.all(now)[:1], "TIMESTAMP WITH TIME ZONE")
    with pytest.raises(DefinitionError):
        daily("day", start="2025-13-01")
