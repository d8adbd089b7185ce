"""The embedded DuckDB engine's settings that run times depend on."""

from __future__ import annotations

from pathlib import Path

from gristmill.execution.engines import create_engine

SPINE_ASOF = """
WITH snapshots AS (
    SELECT unnest(generate_series(TIMESTAMP '2025-11-01', (SELECT max(ts) FROM '{tx}'),
                                  INTERVAL 1 MONTH)) AS as_of
),
spine AS (
    SELECT u.user_id, s.as_of FROM '{users}' u JOIN snapshots s ON u.signup_ts < s.as_of
)
SELECT sp.user_id, sp.as_of, t.ts
FROM spine sp ASOF LEFT JOIN '{tx}' t ON sp.user_id = t.user_id AND sp.as_of > t.ts
"""


def _joins(plan: str) -> list[str]:
    lines = [line.replace("│", "").replace("─", "").strip() for line in plan.splitlines()]
    return [f"{a} {b}" for a, b in zip(lines, lines[1:], strict=False) if "Join" in a]


def test_an_asof_join_over_a_spine_built_by_unnest_is_a_sort_merge_join(tmp_path: Path) -> None:
    """DuckDB guesses an unnest-built spine (the churn example's user_profile) at a row or
    two and, below its ASOF loop-join threshold, plans a nested loop join: quadratic
    (user_profile took ~18 min at 1M transactions instead of ~5 s). The engine turns that
    fallback off; plain DuckDB plans this query as a nested loop join."""
    import duckdb

    users, tx = tmp_path / "users.parquet", tmp_path / "tx.parquet"
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT 'u' || range AS user_id, TIMESTAMP '2025-06-01' + to_hours(range) "
        f"AS signup_ts FROM range(5000)) TO '{users}'"
    )
    con.execute(
        "COPY (SELECT 'u' || (range % 5000) AS user_id, TIMESTAMP '2025-06-01' + "
        f"to_minutes(range * 5) AS ts FROM range(200000)) TO '{tx}'"
    )
    sql = SPINE_ASOF.format(users=users, tx=tx)
    plain = _joins(con.execute("EXPLAIN " + sql).fetchall()[0][1])
    assert any("Nested Loop" in j and "RIGHT" in j for j in plain), plain  # the setting's use
    engine = create_engine("duckdb", memory_limit="1GB", threads=1, temp_directory=tmp_path)
    try:
        with engine.session() as session:
            plan = _joins("\n".join(str(row[-1]) for row in session.rows("EXPLAIN " + sql)))
            rows = session.rows(f"SELECT count(*), count(ts) FROM ({sql})")
    finally:
        engine.close()
    assert not any("Nested Loop" in j and "RIGHT" in j for j in plan), plan
    assert any("Asof Join" in j for j in plan), plan
    assert rows[0][0] == rows[0][1] > 10_000


NAN_MODULE = """
import gristmill as gm

readings = gm.source("readings", "data/*.csv", columns={"id": "BIGINT", "x": "DOUBLE"})
nans = gm.table("nans", sql=\"\"\"
SELECT count_if(isnan(x)) AS by_isnan, count_if(x = 'NaN'::DOUBLE) AS by_equality,
       count_if(x > 2.0) AS above, max(x) AS top
FROM readings
\"\"\")
"""


def test_nan_in_a_table_is_seen_whatever_its_files_min_and_max_say(tmp_path: Path) -> None:
    """The lake's Parquet writer leaves NaN out of a column's min/max (as the format asks);
    DuckDB's optimizer trusted them and folded isnan(x) to false (duckdb#25521). Steps read
    tables with can_have_nan: NaN is counted, compared and sorted as on an Arrow table."""
    import pyarrow.parquet as pq

    from gristmill.workspace import Workspace
    from tests.conftest import write_project

    csv = "id,x\n1,1.5\n2,NaN\n3,2.5\n4,0.5\n"
    root = write_project(tmp_path / "p", module=NAN_MODULE, sql={}, data={"a.csv": csv})
    ws = Workspace.open(root)
    assert ws.run().ok
    files = ws.lake.parquet_files("readings", 0)
    assert files is not None
    stats = pq.ParquetFile(files[0]).metadata.row_group(0).column(1).statistics
    assert (stats.min, stats.max) == (0.5, 2.5)  # the NaN is not in them
    (row,) = ws.read("nans").to_pylist()
    assert row["by_isnan"] == row["by_equality"] == 1
    assert row["above"] == 2  # 2.5 and NaN: DuckDB orders NaN above every number
    assert row["top"] != row["top"]  # NaN
