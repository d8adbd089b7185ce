"""DuckDB's SQL on Spark: each construct's translation gives the same rows on both engines
(real DuckDB, real Spark in local mode), and what has no verified mapping is refused with
its line and what to write instead."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gristmill.execution.engines.dialect import Untranslatable, translate

SCHEMA = {
    "t": {
        "id": "BIGINT",
        "k": "VARCHAR",
        "s": "VARCHAR",
        "l": "INTEGER[]",
        "ts": "TIMESTAMP",
        "d": "DATE",
        "n": "BIGINT",
        "x": "DOUBLE",
    }
}


def _table() -> pa.Table:
    days = [dt.date(2026, 11, 29) + dt.timedelta(days=i) for i in range(8)]  # Sun .. Sun
    return pa.table(
        {
            "id": pa.array(range(1, 9), pa.int64()),
            "k": ["a", "a", "a", "b", "b", "b", "c", "c"],
            "s": ["x", None, "It's", "  pad ", "", "ümlaut", "abc", None],
            "l": pa.array(
                [[1, 2, 3], [], None, [5], [1, 1], [7, 8], [2], [0, 3, 9]], pa.list_(pa.int32())
            ),  # fmt: skip
            "ts": pa.array(
                [dt.datetime(d.year, d.month, d.day, 10 + i, 30, 15) for i, d in enumerate(days)],
                pa.timestamp("us"),
            ),
            "d": pa.array(days, pa.date32()),
            "n": pa.array([0, 1_700_000_000_123, -86_400_000, 5, 6, 7, 8, 9], pa.int64()),
            "x": [0.5, 2.25, -1.75, 10.0, 3.5, 2.5, -0.25, 8.125],
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dialect") / "t.parquet"
    pq.write_table(_table(), path)
    return path


@pytest.fixture(scope="module")
def spark(data: Path) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("gristmill-dialect-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    session.read.parquet(str(data)).createOrReplaceTempView("t")
    yield session
    session.stop()


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9) if math.isfinite(value) else value
    if isinstance(value, Decimal):
        return round(float(value), 9)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)


def duckdb_rows(data: Path, sql: str) -> list[tuple[Any, ...]]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{data}')")
    return _rows(con.execute(sql).fetchall())


def spark_rows(spark: Any, sql: str) -> list[tuple[Any, ...]]:
    translated = translate(sql, "spark", SCHEMA)
    return _rows([tuple(r) for r in spark.sql(translated).collect()])


CASES = {
    "dayofweek: Sunday 0": "SELECT id, dayofweek(ts), dayofweek(d) FROM t",
    "isodow: Monday 1, Sunday 7": "SELECT id, isodow(ts), isodow(d) FROM t",
    "len of a list and of text": "SELECT id, len(l), length(s), len(k) FROM t",
    "epoch_ms both ways": "SELECT id, epoch_ms(ts), epoch_ms(n) FROM t",
    "quantile_cont and median": (
        "SELECT k, quantile_cont(x, 0.25), quantile_cont(x, 0.9), median(x) FROM t GROUP BY k"
    ),
    "generate_series rows": "SELECT * FROM generate_series(2, 5)",
    "an empty generate_series": "SELECT * FROM generate_series(5, 2)",
    "range excludes its end": "SELECT * FROM range(1, 4)",
    "an empty range": "SELECT * FROM range(3, 3)",
    "generate_series as a list": "SELECT id, generate_series(3, id) FROM t",
    "concat skips NULL, || does not": "SELECT id, concat(s, '-', k), s || k FROM t",
    "latest per key with QUALIFY": (
        "SELECT k, id FROM t QUALIFY row_number() OVER (PARTITION BY k ORDER BY ts DESC) = 1"
    ),
    "aggregates": (
        "SELECT k, count(*), count(s), sum(x), avg(x), min(ts), max(d), count(DISTINCT s), "
        "stddev(x), var_pop(x), count_if(x > 1) FROM t GROUP BY k"
    ),
    "arithmetic": "SELECT id, x / 3, id // 3, -id % 3, id / 2, round(x, 1), abs(x), floor(x), "
    "ceil(x), sqrt(id), ln(id), exp(x), pow(x, 2) FROM t",
    "dates and times": (
        "SELECT id, date_trunc('month', ts), ts + INTERVAL 1 DAY, d - INTERVAL 2 DAY, "
        "date_diff('day', d, DATE '2026-12-25'), year(ts), month(d), day(ts), "
        "extract(hour FROM ts), strftime(ts, '%Y-%m-%d %H') FROM t"
    ),
    "casts": "SELECT id, CAST(id AS VARCHAR), CAST('12' AS BIGINT), CAST(ts AS DATE), "
    "CAST(d AS TIMESTAMP), CAST(x AS DECIMAL(10, 2)), TRY_CAST(s AS INTEGER) FROM t",
    "text": (
        "SELECT id, upper(s), lower(k), trim(s), substring(s, 2, 2), replace(s, 'a', 'o'), "
        "starts_with(s, 'x'), regexp_matches(s, '^[a-z]+$'), s LIKE '%a%', s ILIKE 'IT%' FROM t"
    ),
    "lists": "SELECT id, list_filter(l, lambda v: v > 1), array_length(l) FROM t",
    "nulls and conditions": (
        "SELECT id, coalesce(s, k), nullif(k, 'a'), ifnull(s, '?'), greatest(x, id), "
        "least(x, NULL), CASE WHEN x > 2 THEN 'hi' WHEN x < 0 THEN 'neg' ELSE 'lo' END, "
        "s IS NULL, x BETWEEN 0 AND 3, k IN ('a', 'c') FROM t"
    ),
    "windows": (
        "SELECT id, row_number() OVER (PARTITION BY k ORDER BY x), "
        "rank() OVER (ORDER BY k), dense_rank() OVER (ORDER BY k), "
        "lag(x) OVER (PARTITION BY k ORDER BY id), lead(x, 1, 0) OVER (ORDER BY id), "
        "sum(x) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND "
        "CURRENT ROW) FROM t"
    ),
    "joins, unions and subqueries": (
        "WITH a AS (SELECT k, max(x) AS top FROM t GROUP BY k) "
        "SELECT t.id, a.top FROM t LEFT JOIN a ON t.k = a.k AND t.x = a.top "
        "UNION ALL SELECT id, NULL FROM t WHERE id IN (SELECT max(id) FROM t) "
        "EXCEPT SELECT 99, NULL ORDER BY 1 LIMIT 20"
    ),
    "ordering puts NULLs last": "SELECT s FROM t ORDER BY s LIMIT 7",
    "right join": "SELECT a.id, b.id FROM t AS a RIGHT JOIN t AS b ON a.id = b.id + 3",
    "full join": "SELECT a.id, b.id FROM t AS a FULL JOIN t AS b ON a.id = b.id * 2",
    "cross join": (
        "SELECT a.id, b.id FROM (SELECT id FROM t WHERE id < 3) AS a "
        "CROSS JOIN (SELECT id FROM t WHERE id > 6) AS b"
    ),
    "intersect": "SELECT id, k FROM t INTERSECT SELECT id, k FROM t WHERE id > 4",
    "having, offset, null-safe equality": (
        "SELECT k, count(*) FROM t GROUP BY k HAVING count(*) > 1 ORDER BY k LIMIT 5 OFFSET 1"
    ),
    "null-safe comparison": "SELECT id, s IS NOT DISTINCT FROM NULL, s IS DISTINCT FROM 'x' FROM t",
    "first and last values": (
        "SELECT id, first_value(x) OVER (PARTITION BY k ORDER BY id), last_value(x) OVER "
        "(PARTITION BY k ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
        "FROM t"
    ),
    "text to time": "SELECT id, strptime('2026-11-30 10:' || id, '%Y-%m-%d %H:%M') FROM t",
    "today": "SELECT current_date = current_date, current_date > DATE '2026-01-01' FROM t",
}


@pytest.mark.spark
@pytest.mark.parametrize(("case", "sql"), list(CASES.items()), ids=list(CASES))
def test_each_construct_gives_the_same_rows_on_spark(
    spark: Any, data: Path, case: str, sql: str
) -> None:
    expected = duckdb_rows(data, sql)
    assert bool(expected) != case.startswith("an empty"), expected
    assert spark_rows(spark, sql) == expected


def test_ordering_keeps_nulls_last_after_the_limit(data: Path) -> None:
    """A LIMIT after ORDER BY: the rows chosen depend on where NULLs sort."""
    sql = translate("SELECT s FROM t ORDER BY s LIMIT 7", "spark", SCHEMA)
    assert "NULLS LAST" in sql


@pytest.mark.parametrize(
    ("sql", "construct", "line", "hint"),
    [
        (
            "SELECT *\nFROM t\nASOF JOIN t AS u ON t.k = u.k AND t.ts >= u.ts",
            "ASOF JOIN",
            3,
            "gm.training_set",
        ),
        ("SELECT id,\n  my_udf(x)\nFROM t", "my_udf()", 2, "Python step"),
        ("SELECT approx_count_distinct(k) FROM t", "approx_distinct()", 1, "count(DISTINCT"),
        ("SELECT CAST(id AS UBIGINT) FROM t", "type UBIGINT", 1, "cast to BIGINT"),
        ("SELECT len(NULL) FROM t", "LENGTH(NULL)", 1, "array_length(x)"),
        ("SELECT * FROM generate_series(1, 9, 2)", "GENERATE_SERIES(1, 9, 2)", 1, "step"),
        ("SELECT to_timestamp(n) FROM t", "to_timestamp(n)", 1, "epoch_ms(seconds * 1000)"),
        ("SELECT FROM WHERE", "SQL that does not parse", 1, "DuckDB"),
    ],
)
def test_what_has_no_verified_mapping_is_refused_with_its_line(
    sql: str, construct: str, line: int | None, hint: str
) -> None:
    with pytest.raises(Untranslatable) as caught:
        translate(sql, "spark", SCHEMA)
    (first, *_) = caught.value.refusals
    assert (first.construct, first.line) == (construct, line)
    assert hint in first.hint


def test_every_refusal_of_a_step_is_reported_at_once() -> None:
    sql = "SELECT my_a(x),\n  my_b(x)\nFROM t\nASOF JOIN t AS u ON t.ts >= u.ts"
    with pytest.raises(Untranslatable) as caught:
        translate(sql, "spark", SCHEMA)
    assert [(r.construct, r.line) for r in caught.value.refusals] == [
        ("my_a()", 1),
        ("my_b()", 2),
        ("ASOF JOIN", 4),
    ]
    assert str(caught.value) == "my_a() has no verified mapping to spark (and 2 more)"


def test_duckdb_is_its_own_dialect() -> None:
    sql = "SELECT * FROM t ASOF JOIN u ON t.ts >= u.ts"
    assert translate(sql, "duckdb", SCHEMA) == sql
