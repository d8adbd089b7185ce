"""kill -9 at any point of a run: nothing half-written becomes visible, and the next run
finishes the job with results equal to a clean run. Real subprocesses, real SIGKILL."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gristmill.workspace import Workspace
from tests.conftest import BASIC_MODULE, write_project

pytestmark = pytest.mark.slow

SLOW_MODULE = (
    BASIC_MODULE
    + """
import time
from pathlib import Path

@gm.table
def slow_copy(per_user: pa.Table) -> pa.Table:
    marker = Path(__file__).parent / "slow_started"
    marker.write_text("x")
    time.sleep(float((Path(__file__).parent / "sleep").read_text()))
    return per_user
"""
)


def make(root: Path, sleep: float = 0.0) -> Path:
    write_project(root, module=SLOW_MODULE)
    (root / "sleep").write_text(str(sleep))
    return root


def env(failpoints: str = "") -> dict[str, str]:
    return {**os.environ, "GRISTMILL_FAILPOINTS": failpoints}


def gristmill(root: Path, *args: str, failpoints: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root), *args],
        env=env(failpoints),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root), *args],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def snapshot(root: Path) -> dict[str, object]:
    ws = Workspace.open(root)
    out: dict[str, object] = {}
    for name in ws.graph.order:
        m = ws.catalog.latest(name)
        data = ws.read(name)
        out[name] = (m.rows, m.quarantined, m.quarantine_counts, sorted(map(str, data.to_pylist())))
        out[name + "__quarantine"] = sorted(
            str({k: v for k, v in row.items() if k != "_run_id"})
            for row in ws.quarantine(name).to_pylist()
        )
    ws.close()
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = make(tmp_path_factory.mktemp("clean") / "p")
    proc = gristmill(root)
    assert proc.returncode == 0, proc.stderr
    return snapshot(root)


@pytest.mark.parametrize(
    "point",
    [
        "after_quarantine:txns",
        "after_commit:txns",
        "after_commit:per_user",
        "after_commit:slow_copy",
    ],
)
def test_kill_at_a_failpoint_then_rerun_equals_clean_run(tmp_path: Path, clean, point) -> None:
    root = make(tmp_path / "p")
    proc = gristmill(root, failpoints=point)
    assert proc.returncode == -signal.SIGKILL
    ws = Workspace.open(root)
    table = point.split(":")[1]
    assert ws.catalog.latest(table) is None  # not recorded yet: not visible to readers
    ws.close()
    rerun = gristmill(root)
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(root) == clean
    ws = Workspace.open(root)
    runs = ws.runs()
    # the last step's commit adopted on recovery leaves nothing to do: a no-op rerun
    assert [r.status for r in runs] == [
        "noop" if point.endswith("slow_copy") else "success",
        "crashed",
    ]
    if point.startswith("after_commit"):
        assert ws.catalog.latest(table).recovered  # adopted from the Delta commit record
        recovered = runs[0].summary["recovered_versions"]
        # A sibling step running in parallel (top_users beside slow_copy) may also have
        # committed before the kill without being recorded: it is adopted too.
        assert [table, 0] in recovered
        assert {name for name, _ in recovered} <= {table, "top_users"}
    assert ws.plan().is_noop
    ws.close()


def test_kill_mid_step_leaves_no_visible_version(tmp_path: Path, clean) -> None:
    root = make(tmp_path / "p", sleep=30)
    proc = start(root)
    deadline = time.monotonic() + 60
    while not (root / "slow_started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ws = Workspace.open(root)
    assert ws.catalog.latest("slow_copy") is None
    assert not ws.lake.exists("slow_copy")
    assert ws.catalog.latest("per_user").version == 0
    ws.close()
    (root / "sleep").write_text("0")
    rerun = gristmill(root)
    assert rerun.returncode == 0, rerun.stderr
    assert "slow_copy" in rerun.stdout
    assert snapshot(root) == clean


def test_kill_during_delta_write_of_a_large_table(tmp_path: Path) -> None:
    """A kill while Parquet files are being written leaves only unreferenced files."""
    module = """
import gristmill as gm
nums = gm.source("nums", "data/*.csv", columns={"i": "BIGINT"})
"""
    root = write_project(
        tmp_path / "p",
        module=module,
        sql={"big.sql": "select range as i, md5(range::varchar) as h from range(30000000)"},
        data={"a.csv": "i\n1\n"},
    )
    proc = start(root)
    parquet = root / "lake" / "big"
    deadline = time.monotonic() + 120
    while not (parquet.exists() and any(parquet.glob("*.parquet"))):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ws = Workspace.open(root)
    assert ws.catalog.latest("big") is None
    assert ws.lake.latest_version("big") is None  # files, but no commit
    ws.close()
    shutil.rmtree(root / ".gristmill" / "tmp", ignore_errors=True)
    rerun = gristmill(root, "+big")
    assert rerun.returncode == 0, rerun.stderr
    ws = Workspace.open(root)
    assert ws.catalog.latest("big").rows == 30_000_000
    ws.close()
