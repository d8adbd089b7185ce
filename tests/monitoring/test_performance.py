"""The delayed-label join: each prediction meets its entity's first label at or after it,
within the horizon; nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pyarrow as pa

from gristmill.execution.monitoring.performance import Labels, Predictions, joined_sql


def test_each_prediction_takes_the_first_label_at_or_after_it_within_the_horizon() -> None:
    t = datetime(2026, 6, 1)
    predictions = pa.table(
        {
            "user_id": ["a", "a", "b", "c", "d"],
            "as_of": [t, t + timedelta(days=40), t, t, t - timedelta(days=90)],
            "score": [0.9, 0.8, 0.1, 0.5, 0.7],
        }
    )
    labels = pa.table(
        {
            "user_id": ["a", "a", "b", "b", "c", "d"],
            "label_ts": [
                t + timedelta(days=10),  # a's first prediction: this one, not the later
                t + timedelta(days=45),  # a's second prediction
                t - timedelta(days=1),  # before b's prediction: never used
                t + timedelta(days=20),  # b's
                t + timedelta(days=60),  # c: beyond the 31-day horizon
                t + timedelta(days=5),  # d: predicted 90 days before, outside the window
            ],
            "churned": [1, 0, 1, 0, 1, 1],
        }
    )
    sql = joined_sql(
        Predictions("p_table", ("user_id",), "as_of", from_log=False),
        Labels("l_table", ("user_id",), "label_ts", "churned"),
        timedelta(days=31),
        t - timedelta(days=30),
        t + timedelta(days=40),
    )
    con = duckdb.connect()
    con.register("p_table", predictions)
    con.register("l_table", labels)
    rows = con.execute(sql).fetchall()
    assert rows == [(t, 0.1, 0.0), (t, 0.9, 1.0), (t + timedelta(days=40), 0.8, 0.0)]


def test_log_predictions_read_the_entity_from_json_and_only_served_rows() -> None:
    from datetime import UTC

    t = datetime(2026, 6, 1, tzinfo=UTC)
    log = pa.table(
        {
            "at": pa.array([t, t, t], pa.timestamp("us", tz="UTC")),
            "entity": ['{"user_id":"a"}', '{"user_id":"b"}', '{"user_id":"a"}'],
            "score": [0.7, 0.2, 0.4],
            "served": [True, True, False],  # the shadow challenger's answer is not counted
        }
    )
    labels = pa.table(
        {
            "user_id": ["a", "b"],
            "label_ts": [datetime(2026, 6, 2), datetime(2026, 6, 3)],
            "churned": [1, 0],
        }
    )
    sql = joined_sql(
        Predictions("log", ("user_id",), "at", from_log=True),
        Labels("labels", ("user_id",), "label_ts", "churned"),
        timedelta(days=31),
        t - timedelta(days=1),
        t + timedelta(days=1),
    )
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("log", log)
    con.register("labels", labels)
    assert sorted(r[1:] for r in con.execute(sql).fetchall()) == [(0.2, 0.0), (0.7, 1.0)]


def test_log_times_are_utc_whatever_the_machine_zone(monkeypatch, tmp_path) -> None:
    """The engine's sessions cast TIMESTAMPTZ to UTC wall time even where the zone is not UTC."""
    import time
    from datetime import UTC

    from gristmill.execution.engines.duckdb.engine import DuckDBEngine

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        engine = DuckDBEngine(temp_directory=tmp_path)
        with engine.session() as session:
            session.register(
                "log",
                pa.table(
                    {"at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", "UTC"))}
                ),
            )
            assert session.rows('SELECT CAST("at" AS TIMESTAMP) FROM log') == [
                (datetime(2026, 1, 1),)
            ]
        engine.close()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
