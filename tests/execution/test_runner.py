"""The runner over real DuckDB, Delta and SQLite."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gristmill.execution.reporter import StepResult, StepStatus
from gristmill.planning import Plan
from gristmill.workspace import Workspace
from tests.conftest import write_project


def test_run_builds_every_table_with_exact_lineage(workspace: Workspace) -> None:
    outcome = workspace.run()
    assert outcome.result.status == "success"
    assert workspace.read("per_user").sort_by("user_id").to_pydict() == {
        "user_id": ["u1", "u2"],
        "total": [15.0, 7.0],
        "n": [2, 1],
    }
    assert workspace.read("top_users").sort_by("user_id").to_pydict() == {
        "user_id": ["u1", "u2"],
        "total": [15.0, 7.0],
    }
    per_user = workspace.catalog.latest("per_user")
    assert per_user.inputs == {"txns": 0}
    assert per_user.rows == 2 and per_user.version == 0
    again = Workspace.open(workspace.root).run()
    assert again.result.status == "noop"
    assert [s.status for s in again.result.steps] == [StepStatus.SKIPPED] * 3


def test_old_versions_stay_readable_as_arrow_polars_pandas(
    workspace: Workspace, project: Path
) -> None:
    workspace.run()
    (project / "data" / "b.csv").write_text("id,user_id,amount\n30,u1,100\n")
    Workspace.open(project).run()
    assert workspace.read("per_user", 0).sort_by("user_id")["total"].to_pylist() == [15.0, 7.0]
    assert workspace.read("per_user", 1).sort_by("user_id")["total"].to_pylist() == [115.0, 7.0]
    frame = workspace.read("per_user", 0, as_="polars").sort("user_id")
    assert frame["total"].to_list() == [15.0, 7.0]
    pdf = workspace.read("per_user", 1, as_="pandas").sort_values("user_id")
    assert pdf["n"].tolist() == [3, 1]


def test_sql_steps_of_every_shape_read_their_inputs(tmp_path: Path) -> None:
    """A SQL step without a contract streams one query over its inputs (read as
    not-materialized CTEs); every shape of query a user writes reads the same rows."""
    sql = {
        "per_user.sql": "select user_id, sum(amount) as total\nfrom txns\ngroup by 1\n",
        "self_join.sql": (
            "select a.user_id, b.total\nfrom per_user a join per_user b using (user_id)\n"
        ),
        "own_with.sql": (
            "with big as (select * from per_user where total > 5)\nselect user_id from big\n"
        ),
        "commented.sql": "select user_id from per_user -- the last line is a comment\n",
        "from_first.sql": "from per_user select user_id, total * 2 as twice;\n",
        "both.sql": "select s.user_id, o.user_id as other from self_join s, own_with o\n",
    }
    ws = Workspace.open(write_project(tmp_path, sql=sql))
    assert ws.run().ok
    read = {n[:-4]: ws.read(n[:-4]).sort_by("user_id").to_pydict() for n in sql}
    assert read["per_user"] == {"user_id": ["u1", "u2"], "total": [15.0, 7.0]}
    assert read["self_join"] == read["per_user"]
    assert read["own_with"] == {"user_id": ["u1", "u2"]}
    assert read["commented"] == {"user_id": ["u1", "u2"]}
    assert read["from_first"] == {"user_id": ["u1", "u2"], "twice": [30.0, 14.0]}
    assert sorted(zip(read["both"]["user_id"], read["both"]["other"], strict=True)) == [
        ("u1", "u1"), ("u1", "u2"), ("u2", "u1"), ("u2", "u2")
    ]  # fmt: skip


def test_sql_error_names_file_line_and_blocks_downstream(tmp_path: Path) -> None:
    sql = {
        "per_user.sql": (
            "select user_id,\n  sum(amount) as total\nfrom txns\nwhere nope > 1\ngroup by 1\n"
        ),
        "top_users.sql": "select * from per_user\n",
    }
    ws = Workspace.open(write_project(tmp_path, sql=sql))
    outcome = ws.run()
    steps = {s.name: s for s in outcome.result.steps}
    assert not outcome.ok
    assert steps["txns"].status is StepStatus.SUCCESS
    assert steps["per_user"].status is StepStatus.FAILED
    assert steps["per_user"].error["location"].endswith("per_user.sql:4")
    assert 'Referenced column "nope" not found' in steps["per_user"].error["message"]
    assert steps["top_users"].status is StepStatus.BLOCKED
    assert steps["top_users"].reason == "blocked: upstream 'per_user' did not build"
    run = ws.run_info(outcome.result.run_id)
    assert run.status == "failed"
    assert {s["table"]: s["status"] for s in run.steps} == {
        "txns": "success",
        "per_user": "failed",
        "top_users": "blocked",
    }


PY_MODULE = """
import pandas as pd
import polars as pl
import pyarrow as pa
import gristmill as gm

txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR", "amount": "DOUBLE"})

@gm.table
def with_polars(txns: pl.DataFrame) -> pl.DataFrame:
    return txns.with_columns((pl.col("amount") * 2).alias("double"))

@gm.table(params={"factor": 3})
def with_pandas(with_polars: pd.DataFrame, factor: int) -> pd.DataFrame:
    with_polars["triple"] = with_polars["amount"] * factor
    return with_polars

@gm.table
def broken(txns: pa.Table) -> pa.Table:
    return txns.column("missing")
"""


def test_python_steps_take_and_return_polars_and_pandas(tmp_path: Path) -> None:
    root = write_project(
        tmp_path, module=PY_MODULE, sql={}, data={"a.csv": "id,amount\n1,1.5\n2,2\n"}
    )
    ws = Workspace.open(root)
    steps = {s.name: s for s in ws.run().result.steps}
    assert steps["with_pandas"].status is StepStatus.SUCCESS
    data = ws.read("with_pandas").sort_by("id").to_pydict()
    assert data == {
        "id": ["1", "2"],
        "amount": [1.5, 2.0],
        "double": [3.0, 4.0],
        "triple": [4.5, 6.0],
    }
    error = steps["broken"].error
    assert steps["broken"].status is StepStatus.FAILED
    assert error["message"].startswith("broken: KeyError")
    assert error["location"].endswith("pipeline.py:20")  # the failing line


LAZY_MODULE = """
from __future__ import annotations
from typing import TYPE_CHECKING
import gristmill as gm
if TYPE_CHECKING:
    import polars as pl

txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR", "amount": "DOUBLE"})

@gm.table
def plain(txns):
    import pyarrow as pa
    import pyarrow.compute as pc
    assert isinstance(txns, pa.Table), type(txns)
    return txns.append_column("cents", pc.multiply(txns["amount"], 100))

@gm.table
def hinted_lazily(txns: pl.DataFrame) -> pl.DataFrame:
    import pyarrow as pa
    return pa.table({"kind": [type(txns).__module__.split(".")[0]]})
"""


def test_a_step_without_a_resolvable_annotation_receives_arrow(tmp_path: Path) -> None:
    """The README's promise: heavy libraries imported inside a step keep every command
    fast; an annotation only under TYPE_CHECKING asks for nothing, so the step gets Arrow."""
    root = write_project(
        tmp_path, module=LAZY_MODULE, sql={}, data={"a.csv": "id,amount\n1,1.5\n2,2\n"}
    )
    ws = Workspace.open(root)
    assert ws.run().ok
    assert ws.read("plain").sort_by("id")["cents"].to_pylist() == [150.0, 200.0]
    assert ws.read("hinted_lazily").to_pydict() == {"kind": ["pyarrow"]}


class Recorder:
    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def plan_ready(self, plan: Plan) -> None:
        pass

    def step_started(self, name: str, reason: str) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def step_finished(self, result: StepResult) -> None:
        if result.status is not StepStatus.SKIPPED:
            with self.lock:
                self.active -= 1


def test_independent_steps_run_in_parallel_bounded(tmp_path: Path) -> None:
    module = """
import time
import pyarrow as pa
import gristmill as gm
txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR"})
""" + "".join(
        f"""
@gm.table
def slow_{i}(txns: pa.Table) -> pa.Table:
    time.sleep(0.3)
    return txns
"""
        for i in range(4)
    )
    root = write_project(
        tmp_path,
        module=module,
        sql={},
        data={"a.csv": "id\n1\n"},
        toml='name = "t"\nparallelism = 2\n',
    )
    recorder = Recorder()
    started = time.perf_counter()
    assert Workspace.open(root).run(reporter=recorder).ok
    elapsed = time.perf_counter() - started
    assert recorder.peak == 2
    assert elapsed < 4 * 0.3 + 0.6  # two at a time, not one by one


def test_selection_runs_only_what_is_picked(workspace: Workspace) -> None:
    outcome = workspace.run(["+per_user"])
    assert [s.name for s in outcome.result.steps] == ["txns", "per_user"]
    assert workspace.catalog.latest("top_users") is None


def test_selected_step_without_built_input_fails_clearly(workspace: Workspace) -> None:
    step = workspace.run(["per_user"]).result.steps[0]
    assert step.status is StepStatus.FAILED
    assert "input 'txns' has never been built" in step.error["message"]


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    module = """
import gristmill as gm
events = gm.source("events", "data/*.parquet", columns={"id": "VARCHAR"})
"""
    root = write_project(tmp_path, module=module, sql={}, data={"broken.parquet": "not parquet"})
    step = Workspace.open(root).run().result.steps[0]
    assert step.status is StepStatus.FAILED
    assert step.error["message"].startswith("cannot read data/broken.parquet as parquet")


def test_file_missing_a_declared_column(tmp_path: Path) -> None:
    root = write_project(tmp_path, data={"a.csv": "id,amount\n1,2\n"})
    step = Workspace.open(root).run().result.steps[0]
    assert step.error["message"] == "data/a.csv lacks declared column(s) user_id"


def test_concurrent_run_is_refused(workspace: Workspace) -> None:
    from gristmill.workspace.core import RunInProgressError, build_request

    with workspace.coordinator.start(build_request(["+per_user"], False, (), "test")) as active:
        with pytest.raises(RunInProgressError, match=f"the limit is 1: {active.run_id[:12]}"):
            Workspace.open(workspace.root).run()
        active.finish("noop")
    assert Workspace.open(workspace.root).run().result.ok  # free again once it ended


def test_a_run_that_writes_no_table_neither_waits_nor_blocks(workspace: Workspace) -> None:
    from gristmill.storage.catalog.runs import RunRequest
    from gristmill.workspace.core import build_request

    monitor = RunRequest(kind="monitor", params={"targets": []}, requested_by="test")
    with workspace.coordinator.start(monitor) as evaluating:
        built = Workspace.open(workspace.root).run()  # a build beside a monitor evaluation
        assert built.result.ok
        with workspace.coordinator.start(build_request(["+per_user"], False, (), "t")) as b:
            again = Workspace.open(workspace.root).coordinator
            with again.start(monitor) as second:  # and an evaluation beside a build
                second.finish("success")
            b.finish("noop")
        evaluating.finish("success")
    kinds = [r.kind for r in workspace.runs(10)]
    assert kinds.count("monitor") == 2 and kinds.count("build") == 2


def test_a_csv_row_of_the_wrong_width_is_named_with_its_line(tmp_path: Path) -> None:
    csv = "id,user_id,amount\n1,u1,10\n2,u1,5,9\n3,u2,7\n"
    root = write_project(tmp_path, data={"a.csv": csv})
    step = Workspace.open(root).run().result.steps[0]
    assert step.status is StepStatus.FAILED
    assert step.error["message"] == (
        "data/a.csv line 3 has 4 columns, the header has 3 (delimiter ',')"
    )


def test_a_table_deleted_from_the_lake_is_not_rebuilt_under_recorded_version_numbers(
    workspace: Workspace,
) -> None:
    import shutil

    assert workspace.run().ok
    shutil.rmtree(workspace.lake.path("per_user"))
    outcome = Workspace.open(workspace.root).run(["per_user"], full_refresh=True)
    assert not outcome.ok
    error = {s.name: s.error for s in outcome.result.steps if s.error}["per_user"]
    assert error["message"] == (
        "per_user: the catalog records versions up to v0, but its Delta table is gone from "
        f"the lake ({workspace.lake.path('per_user')})"
    )
    assert "restore the table's folder" in error["hint"]
    assert not workspace.lake.exists("per_user")  # nothing was written under v0 again


MEMORY_MODULE = """
import pyarrow as pa
import gristmill as gm

txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR", "amount": "DOUBLE"})
# 60M rows of two repeated values: about 1 MB on disk, 960 MB in memory
wide = gm.table("wide", sql="SELECT 7::BIGINT AS a, 1.5::DOUBLE AS b FROM range(60000000)")

@gm.table
def small_sum(txns: pa.Table) -> pa.Table:
    return pa.table({"n": [txns.num_rows]})

@gm.table
def wide_sum(wide: pa.Table, txns: pa.Table) -> pa.Table:
    return pa.table({"n": [wide.num_rows]})
"""


def _memory_cgroup(limit: int) -> Path:
    """A cgroup (v1 or v2) below this process's own, limited to ``limit`` bytes."""
    import uuid

    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if "memory" in line.split(":")[1].split(",")]
    if v1:
        folder, limit_file = (
            Path("/sys/fs/cgroup/memory") / v1[0].lstrip("/"),
            "memory.limit_in_bytes",
        )
    else:
        group = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        folder, limit_file = Path("/sys/fs/cgroup") / group.lstrip("/"), "memory.max"
    child = folder / f"gristmill-test-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here ({exc}); the test needs root")
    (child / limit_file).write_text(str(limit))
    return child


def test_a_python_step_whose_inputs_cannot_fit_is_refused_before_it_reads_them(
    tmp_path: Path,
) -> None:
    """A real process in a real memory cgroup of 800 MB (what a container gets): the Python
    step over a table that takes 960 MB decoded (1 MB on disk) is refused, naming the sizes
    and the limit, before it reads a row; the step over a small input runs in the same
    process."""
    root = write_project(
        tmp_path, module=MEMORY_MODULE, sql={}, data={"a.csv": "id,amount\n1,1.5\n2,2\n"}
    )
    ws = Workspace.open(root)
    built = ws.run(["wide", "txns"])
    assert built.ok, built.result.error()
    assert ws.lake.version_bytes("wide", 0) < 20_000_000
    assert ws.lake.decoded_bytes("wide", 0) == 60_000_000 * 16
    group = _memory_cgroup(800 * 2**20)
    try:
        proc = subprocess.run(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", sys.executable,
             "-m", "gristmill", "run", "small_sum", "wide_sum", "-p", str(root)],
            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    finally:
        group.rmdir()
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said
    assert "Traceback" not in said and "MemoryError" not in said, said
    refusal = "wide_sum: a Python step gets its inputs in memory, and they take at least"
    assert f"{refusal} 960.0 MB" in said and "(wide 960.0 MB, txns" in said, said
    assert "left under the container's memory limit" in said
    assert "write it as a SQL step" in said
    after = Workspace.open(root)
    assert after.read("small_sum").to_pylist() == [{"n": 2}]
    assert after.lake.latest_version("wide_sum") is None


def test_a_killed_process_s_scratch_rows_are_removed_at_the_next_run(project: Path) -> None:
    """Rows on their way between engines sit in .gristmill/scratch (and a remote lake's
    staging) under the writing process's id; the next run removes a dead process's
    folders (an erasure must not miss such copies) and keeps a live one's."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    state = project / ".gristmill"
    left = state / "scratch" / f"gm-{dead.stdout.strip()}-rows-abc" / "rows"
    staged = state / "lake-staging" / "t" / f"gm-{dead.stdout.strip()}-run-1"
    live = state / "scratch" / f"gm-{os.getpid()}-rows-def"
    for folder in (left, staged, live):
        folder.mkdir(parents=True)
        (folder / "part-0.parquet").write_bytes(b"PAR1")
    ws = Workspace.open(project)
    assert ws.run().ok
    assert not left.parent.exists() and not staged.exists()
    assert (live / "part-0.parquet").exists()
    # an erasure removes them too (it may run with no build after the crash)
    again = state / "scratch" / f"gm-{dead.stdout.strip()}-quarantine-x"
    again.mkdir(parents=True)
    (again / "part-0.parquet").write_bytes(b"PAR1")
    Workspace.open(project).lake.forget_history("txns")
    assert not again.exists() and (live / "part-0.parquet").exists()
