"""Several workers on one PostgreSQL catalog's queue, as separate processes: runs that write
different tables run at once up to [runs] max_concurrent; runs that may write the same
table, or share a tag at its limit, never overlap."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import gm, gm_json, spawn, write_project

pytestmark = pytest.mark.slow

SLOW = """
import os, time
import pyarrow as pa
import gristmill as gm

@gm.table
def a() -> pa.Table:
    time.sleep(float(os.environ.get("GM_SLEEP", "0")))
    return pa.table({"x": [1]})

@gm.table
def b() -> pa.Table:
    time.sleep(float(os.environ.get("GM_SLEEP", "0")))
    return pa.table({"x": [2]})
"""


@pytest.fixture
def catalog(pg_database: str) -> str:
    return pg_database


def make(root: Path, catalog: str, runs: str) -> Path:
    toml = f'name = "w"\ncatalog = "{catalog}"\n\n[runs]\n{runs}\n'
    root = write_project(root, module=SLOW, sql={}, data={}, toml=toml)
    assert gm(root, "run").returncode == 0
    return root


def work(root: Path, workers: int = 2) -> list[dict]:
    """``workers`` worker processes at once, each until the queue has nothing for it."""
    import os

    os.environ["GM_SLEEP"] = "2"
    try:
        procs = [spawn(root, "worker", "--once", "--interval", "0.2") for _ in range(workers)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        del os.environ["GM_SLEEP"]
    runs = [r for r in gm_json(root, "runs", "--limit", "50") if r["kind"] == "build"]
    return sorted(
        (r for r in runs if r["requested_by"].startswith("user:")), key=lambda r: r["started_at"]
    )


def overlap(first: dict, second: dict) -> bool:
    start = max(
        datetime.fromisoformat(first["started_at"]), datetime.fromisoformat(second["started_at"])
    )
    end = min(
        datetime.fromisoformat(first["finished_at"]), datetime.fromisoformat(second["finished_at"])
    )
    return start < end


def test_two_workers_run_disjoint_runs_at_once_and_the_same_table_in_turn(
    tmp_path: Path, catalog: str
) -> None:
    root = make(tmp_path / "p", catalog, "max_concurrent = 2")
    for selection in ("a", "b"):
        gm_json(root, "run", selection, "--full-refresh", "--queue")
    first, second = work(root)[-2:]
    assert {first["selection"], second["selection"]} == {"a", "b"}
    assert first["status"] == second["status"] == "success"
    assert first["owner"] != second["owner"]  # two processes claimed them
    assert overlap(first, second)  # and ran them at once

    for _ in range(2):  # both may write a: one after the other, whatever the limit
        gm_json(root, "run", "a", "--full-refresh", "--queue")
    first, second = work(root)[-2:]
    assert first["selection"] == second["selection"] == "a"
    assert first["status"] == second["status"] == "success"
    assert not overlap(first, second)


def test_a_tag_limit_holds_across_workers(tmp_path: Path, catalog: str) -> None:
    root = make(tmp_path / "p", catalog, "max_concurrent = 4\ntag_limits = { heavy = 1 }")
    for selection in ("a", "b"):
        gm_json(root, "run", selection, "--full-refresh", "--queue", "--tag", "heavy")
    first, second = work(root)[-2:]
    assert first["status"] == second["status"] == "success"
    assert first["params"]["tags"] == ["heavy"]
    assert not overlap(first, second)


def test_a_foreground_run_of_a_busy_table_is_refused_with_the_reason(
    tmp_path: Path, catalog: str
) -> None:
    import os
    import time

    root = make(tmp_path / "p", catalog, "max_concurrent = 2")
    os.environ["GM_SLEEP"] = "5"
    try:
        busy = spawn(root, "run", "a", "--full-refresh")
        deadline = time.monotonic() + 60
        while not gm_json(root, "runs", "--status", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        refused = gm(root, "run", "a", "--full-refresh")
        other = gm(root, "run", "b", "--full-refresh")  # another table: runs beside it
        busy.communicate(timeout=60)
    finally:
        del os.environ["GM_SLEEP"]
    assert refused.returncode == 1, refused.stderr
    assert (
        "this run cannot start now" in refused.stderr
        and "may write the same tables" in refused.stderr
    )
    assert "(both write a)" in refused.stderr
    assert other.returncode == 0, other.stderr
