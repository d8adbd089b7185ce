"""The prediction log's writer process: everything appended is written, even if it dies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from gristmill.serving.log import ProcessLog, decisions_table, log_table
from gristmill.storage.lake import Lake


def record(served: bool = True) -> dict:
    return {
        "request_id": uuid.uuid4().hex,
        "at": datetime.now(UTC),
        "service": "svc",
        "model": "m",
        "model_version": 3,
        "role": "service",
        "entity": {"user_id": "u_1"},
        "features": {"x": 1.5, "plan": "free"},
        "score": 0.25,
        "decision": "watch",
        "reasons": [{"feature": "x", "value": 1.5, "contribution": 0.1}],
        "found": True,
        "latency_ms": 0.2,
        "variant": "champion" if served else "challenger",
        "served": served,
    }


def _ids(lake: Lake, table: str) -> set[str]:
    return set(lake.read(table, lake.latest_version(table))["request_id"].to_pylist())


def test_close_writes_every_record_and_the_served_decisions(tmp_path: Path) -> None:
    log = ProcessLog(str(tmp_path), every_s=0.05)
    records = [record(served=i % 4 != 0) for i in range(500)]
    for r in records:
        log.append(r)
    log.close()
    lake = Lake(tmp_path)
    assert _ids(lake, log_table("svc")) == {r["request_id"] for r in records}
    assert _ids(lake, decisions_table("svc")) == {r["request_id"] for r in records if r["served"]}
    row = lake.read(log_table("svc"), lake.latest_version(log_table("svc"))).to_pylist()[0]
    assert row["features"] == '{"x":1.5,"plan":"free"}' and row["model_version"] == 3


def test_records_after_the_writer_died_are_written_in_process(tmp_path: Path) -> None:
    log = ProcessLog(str(tmp_path), every_s=0.05)
    log._proc.kill()
    log._proc.wait()
    later = [record() for _ in range(50)]
    for r in later:
        log.append(r)
    log.close()
    assert "writing in this process" in log.last_error
    assert _ids(Lake(tmp_path), log_table("svc")) == {r["request_id"] for r in later}
