"""Files written by an engine's own workers, committed to a Delta table by the lake."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gristmill.errors import LakeError
from gristmill.storage.lake import Lake


def _log(lake: Lake, name: str, version: int) -> list[dict[str, object]]:
    path = lake.path(name) / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_written_elsewhere_commit_once_with_exact_statistics(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    folder = lake.files_folder("t", "run1")
    folder.mkdir(parents=True)
    late = dt.datetime(2026, 11, 30, 10, 0, 0, 123_456)
    parts = [
        pa.table({"id": [1, 2], "s": ["a", None], "ts": [late, late]}),
        pa.table({"id": [7, 3], "s": ["z" * 40, "b"], "ts": [late, None]}),
    ]
    for i, part in enumerate(parts):
        pq.write_table(part, folder / f"part-{i}.parquet")
    (folder / "_SUCCESS").write_text("")  # Spark's marker is no data file
    written = lake.commit_files(
        "t", folder, mode="overwrite", record={"run_id": "run1"}, transactions={"gm.x": 4}
    )
    assert (written.version, written.rows) == (0, 4)
    assert sorted(lake.read("t", 0)["id"].to_pylist()) == [1, 2, 3, 7]
    assert lake.transaction_version("t", "gm.x") == 4
    assert lake.commits("t")[0].record == {"run_id": "run1"}
    adds = [e["add"] for e in _log(lake, "t", 0) if "add" in e]
    assert folder.name == f"gm-{os.getpid()}-run1"  # the writer's process id: see clean_scratch
    assert sorted(a["path"] for a in adds) == [f"{folder.name}/part-{i}.parquet" for i in (0, 1)]
    second = json.loads(next(a["stats"] for a in adds if a["path"].endswith("part-1.parquet")))
    assert second["numRecords"] == 2 and second["nullCount"] == {"id": 0, "s": 0, "ts": 1}
    assert (second["minValues"]["id"], second["maxValues"]["id"]) == (3, 7)
    assert "s" not in second["minValues"]  # a 40-character max is no exact bound
    # milliseconds in the log: the low bound rounded down, the high one up
    assert second["minValues"]["ts"] == "2026-11-30T10:00:00.123Z"
    assert second["maxValues"]["ts"] == "2026-11-30T10:00:00.124Z"

    folder = lake.files_folder("t", "run2")
    folder.mkdir()
    pq.write_table(pa.table({"id": [9], "s": ["q"], "ts": [late]}), folder / "p.parquet")
    again = lake.commit_files("t", folder, mode="append", record={"run_id": "run2"})
    assert again.version == 1 and sorted(lake.read("t", 1)["id"].to_pylist()) == [1, 2, 3, 7, 9]
    from deltalake import DeltaTable

    found = DeltaTable(str(lake.path("t"))).to_pyarrow_dataset()
    assert found.to_table(filter=pa.compute.field("id") == 9).num_rows == 1


def test_files_the_lake_cannot_take_are_refused_with_the_fix(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    folder = lake.files_folder("t", "r")
    folder.mkdir(parents=True)
    with pytest.raises(LakeError, match="no Parquet files were written"):
        lake.commit_files("t", folder, mode="overwrite", record={})
    nanos = pa.array([1], pa.timestamp("ns"))
    pq.write_table(pa.table({"ts": nanos}), folder / "a.parquet", coerce_timestamps=None)
    with pytest.raises(LakeError, match="outputTimestampType=TIMESTAMP_MICROS") as caught:
        lake.commit_files("t", folder, mode="overwrite", record={})
    assert "column 'ts' holds nanosecond" in str(caught.value)
    (folder / "a.parquet").unlink()
    pq.write_table(pa.table({"x": [1]}), folder / "a.parquet")
    pq.write_table(pa.table({"x": ["1"]}), folder / "b.parquet")
    with pytest.raises(LakeError, match="b.parquet has another schema"):
        lake.commit_files("t", folder, mode="overwrite", record={})
    assert not lake.exists("t")


@pytest.mark.spark
def test_spark_executors_write_and_the_lake_commits(tmp_path: Path) -> None:
    """What the Spark engine will do: its executors write the result's Parquet files into
    the table's folder, the driver commits them through delta-rs; nothing of the result
    passes through the driver."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    lake = Lake(tmp_path / "lake")
    query = (
        "SELECT id, CAST(id % 7 AS STRING) AS k, TIMESTAMP_NTZ'2026-11-30 10:00:00' + "
        "make_interval(0, 0, 0, 0, 0, 0, id) AS ts, id / 3 AS x FROM range(0, 5000)"
    )
    try:
        folder = lake.files_folder("t", "int96")  # Spark's default for a TIMESTAMP
        spark.sql("SELECT TIMESTAMP'2026-11-30 10:00:00' AS at").write.parquet(str(folder))
        with pytest.raises(LakeError, match="TIMESTAMP_MICROS"):
            lake.commit_files("t", folder, mode="overwrite", record={})
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        folder = lake.files_folder("t", "run1")
        spark.sql(query).repartition(3).write.parquet(str(folder))
        written = lake.commit_files("t", folder, mode="overwrite", record={"run_id": "run1"})
        expected = sorted(tuple(r) for r in spark.sql(query).collect())
    finally:
        spark.stop()
    assert written.rows == 5000
    table = lake.read("t", written.version)
    got = sorted(zip(*(table[c].to_pylist() for c in ("id", "k", "ts", "x")), strict=True))
    assert got == expected
