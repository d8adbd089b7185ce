"""Contracts over real DuckDB and Delta: quarantine with reasons, limits, row counts."""

from pathlib import Path

import pyarrow as pa

from gristmill.execution.reporter import StepStatus
from gristmill.workspace import Workspace
from tests.conftest import write_project


def by_id(rows: list[dict]) -> dict:
    return {(r["id"], tuple(r["_checks"])): r for r in rows}


def test_failing_rows_are_quarantined_with_check_and_original_values(workspace: Workspace) -> None:
    outcome = workspace.run()
    txns = outcome.result.steps[0]
    assert txns.status is StepStatus.SUCCESS
    assert txns.rows == 3 and txns.quarantined == 4
    assert txns.quarantine_counts == {
        "not_null(user_id)": 1,
        "range(0 <= amount)": 1,
        "type(amount DOUBLE)": 1,
        "unique(id)": 1,
    }
    good = workspace.read("txns").sort_by("id").to_pydict()
    assert good == {
        "id": ["1", "2", "6"],
        "user_id": ["u1", "u1", "u2"],
        "amount": [10.0, 5.0, 7.0],
    }
    assert workspace.read("txns").schema.field("amount").type == pa.float64()
    rows = by_id(workspace.quarantine("txns").to_pylist())
    assert rows[("3", ("type(amount DOUBLE)",))]["amount"] == "abc"  # the original text
    assert rows[("4", ("not_null(user_id)",))]["user_id"] is None
    assert rows[("5", ("range(0 <= amount)",))]["amount"] == "-1"
    dup = rows[("6", ("unique(id)",))]
    assert dup["amount"] == "8" and dup["_file"] == "data/a.csv" and dup["_table_version"] == 0


def test_share_over_limit_fails_the_step_and_writes_nothing(tmp_path: Path) -> None:
    module = """
import gristmill as gm
txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR", "amount": "DOUBLE"},
                 checks=[gm.in_range("amount", min=0)])
"""
    root = write_project(
        tmp_path, module=module, sql={}, data={"a.csv": "id,amount\n1,1\n2,-1\n3,-2\n4,4\n"}
    )
    ws = Workspace.open(root)
    step = ws.run().result.steps[0]
    assert step.status is StepStatus.FAILED
    assert "2 of 4 rows (50.0%)" in step.error["message"]
    assert "range(0 <= amount): 2" in step.error["message"]
    assert ws.catalog.latest("txns") is None
    assert not ws.lake.exists("txns")
    assert ws.plan().step("txns").reason == "never ingested"  # the files are retried


def test_accepted_values_regex_and_row_count(tmp_path: Path) -> None:
    module = """
import gristmill as gm
users = gm.source("users", "data/*.csv", columns={"id": "VARCHAR", "plan": "VARCHAR"},
                  checks=[gm.accepted_values("plan", ["free", "pro"]), gm.matches("id", r"u_\\d+")],
                  max_quarantine_share=0.9)
small = gm.table("small", sql="select * from users", row_count=gm.row_count(max=1))
"""
    root = write_project(
        tmp_path,
        module=module,
        sql={},
        data={"a.csv": "id,plan\nu_1,free\nu_2,gold\nx_3,pro\nu_4,pro\n"},
    )
    ws = Workspace.open(root)
    steps = {s.name: s for s in ws.run().result.steps}
    assert steps["users"].quarantine_counts == {"accepted_values(plan)": 1, "regex(id)": 1}
    assert steps["small"].status is StepStatus.FAILED
    assert "row_count(0..1) failed with 2 rows" in steps["small"].error["message"]


def test_unique_holds_across_incremental_appends(workspace: Workspace, project: Path) -> None:
    workspace.run()
    (project / "data" / "b.csv").write_text("id,user_id,amount\n1,u7,1\n20,u7,2\n")
    step = Workspace.open(project).run().result.steps[0]
    assert (step.mode, step.rows, step.rows_added) == ("append", 4, 1)
    assert step.quarantine_counts == {"unique(id)": 1}
    assert step.files == ("data/b.csv",)


def test_contract_on_sql_step_quarantines_its_rows(tmp_path: Path) -> None:
    module = """
import gristmill as gm
txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR", "amount": "DOUBLE"})
big = gm.table("big", sql="select id, amount * 10 as amount10 from txns",
               columns={"amount10": "INTEGER"}, checks=[gm.in_range("amount10", max=50)],
               max_quarantine_share=0.5)
"""
    root = write_project(
        tmp_path, module=module, sql={}, data={"a.csv": "id,amount\n1,1\n2,2\n3,9\n"}
    )
    ws = Workspace.open(root)
    steps = {s.name: s for s in ws.run().result.steps}
    assert steps["big"].quarantine_counts == {"range(amount10 <= 50)": 1}
    data = ws.read("big").sort_by("id")
    assert data.to_pydict() == {"id": ["1", "2"], "amount10": [10, 20]}
    assert data.schema.field("amount10").type == pa.int32()
    assert ws.quarantine("big").column("amount10").to_pylist() == ["90.0"]


def test_unique_on_a_sql_step_keeps_the_same_row_whatever_the_order(tmp_path: Path) -> None:
    module = """
import gristmill as gm
txns = gm.source("txns", "data/*.csv", columns={"k": "VARCHAR", "v": "VARCHAR"})
dedup = gm.table("dedup", sql="select k, v from txns", checks=[gm.unique("k")],
                 max_quarantine_share=0.9)
"""
    for name, rows in (("forward", "1,b\n1,a\n2,c\n"), ("backward", "2,c\n1,a\n1,b\n")):
        root = write_project(tmp_path / name, module=module, sql={}, data={"a.csv": "k,v\n" + rows})
        ws = Workspace.open(root)
        assert ws.run().ok
        assert ws.read("dedup").sort_by("k").to_pydict() == {"k": ["1", "2"], "v": ["a", "c"]}
        quarantined = ws.quarantine("dedup").to_pylist()
        assert [(r["k"], r["v"], r["_checks"], r["_row"]) for r in quarantined] == [
            ("1", "b", ["unique(k)"], None)
        ]
