"""The prediction log's spool and drainer: every spooled answer committed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gristmill.serving.log import decisions_table, log_table, record_row
from gristmill.serving.spool import Drainer, Spool, encode
from gristmill.storage.lake import Lake


def record(served: bool = True, service: str = "svc") -> dict:
    return {
        "request_id": uuid.uuid4().hex,
        "at": datetime.now(UTC),
        "service": service,
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


def _ids(lake: Lake, table: str) -> list[str]:
    version = lake.latest_version(table)
    return [] if version is None else lake.read(table, version)["request_id"].to_pylist()


def _spool(folder: Path, records: list[dict], **kw: int) -> Spool:
    spool = Spool(folder, **kw)
    for r in records:
        spool.write(encode([record_row(r)]))
    return spool


def test_drain_commits_every_row_and_the_served_decisions(tmp_path: Path) -> None:
    records = [record(served=i % 4 != 0) for i in range(500)]
    records += [record(service="other") for _ in range(20)]
    spool = _spool(tmp_path / "spool", records)
    lake = Lake(tmp_path / "lake")
    drainer = Drainer(tmp_path / "spool", lake)
    assert drainer.drain() == 520
    assert sorted(_ids(lake, log_table("svc"))) == sorted(
        r["request_id"] for r in records if r["service"] == "svc"
    )
    assert sorted(_ids(lake, decisions_table("svc"))) == sorted(
        r["request_id"] for r in records if r["served"] and r["service"] == "svc"
    )
    assert len(_ids(lake, log_table("other"))) == 20
    row = lake.read(log_table("svc"), lake.latest_version(log_table("svc"))).to_pylist()[0]
    assert row["features"] == '{"x":1.5,"plan":"free"}' and row["model_version"] == 3
    assert row["reasons"] == '[{"feature":"x","value":1.5,"contribution":0.1}]'
    # the writer still lives: its file stays; more rows are drained on the next pass
    more = [record() for _ in range(7)]
    for r in more:
        spool.write(encode([record_row(r)]))
    assert drainer.drain() == 7 and spool.path.exists()
    spool.close()
    assert drainer.drain() == 0 and not spool.path.exists()  # writer gone, fully drained
    assert len(_ids(lake, log_table("svc"))) == 507


def test_a_restarted_drainer_commits_nothing_twice(tmp_path: Path) -> None:
    """A new drainer starts from byte 0 of every file: the tables' app transactions say
    what they hold, so nothing is appended twice."""
    records = [record() for _ in range(100)]
    spool = _spool(tmp_path / "spool", records)
    lake = Lake(tmp_path / "lake")
    first = Drainer(tmp_path / "spool", lake)
    assert first.drain() == 100
    first.release()
    later = [record() for _ in range(30)]
    for r in later:
        spool.write(encode([record_row(r)]))
    second = Drainer(tmp_path / "spool", lake)
    assert second.drain() == 30
    ids = _ids(lake, log_table("svc"))
    assert len(ids) == len(set(ids)) == 130
    assert len(_ids(lake, decisions_table("svc"))) == 130
    spool.close()


def test_one_drainer_at_a_time(tmp_path: Path) -> None:
    _spool(tmp_path / "spool", [record() for _ in range(5)]).close()
    lake = Lake(tmp_path / "lake")
    holder = Drainer(tmp_path / "spool", lake)
    assert holder.acquire()
    assert Drainer(tmp_path / "spool", lake).drain() == 0
    assert holder.drain() == 5


def test_rotated_files_are_all_drained_then_deleted(tmp_path: Path) -> None:
    records = [record() for _ in range(200)]
    spool = _spool(tmp_path / "spool", records, rotate_bytes=10_000)
    assert len(list((tmp_path / "spool").glob("*.jsonl"))) >= 5
    lake = Lake(tmp_path / "lake")
    drainer = Drainer(tmp_path / "spool", lake)
    assert drainer.drain() == 200
    assert [p.name for p in (tmp_path / "spool").glob("*.jsonl")] == [spool.path.name]
    assert sorted(_ids(lake, log_table("svc"))) == sorted(r["request_id"] for r in records)


WRITER = """
import os, signal, sys, uuid
from datetime import UTC, datetime
from pathlib import Path
from gristmill.serving.log import record_row
from gristmill.serving.spool import Spool, encode
sys.path.insert(0, {tests!r})
from tests.serving.test_spool import record
spool = Spool(Path({folder!r}))
for _ in range(50):
    spool.write(encode([record_row(record())]))
print(spool.path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_rows_of_a_killed_writer_are_kept_and_drained(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    script = textwrap.dedent(WRITER).format(tests=str(Path.cwd()), folder=str(folder))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    path = Path(done.stdout.strip())
    assert path.exists()
    lake = Lake(tmp_path / "lake")
    assert Drainer(folder, lake).drain() == 50
    assert not path.exists() and len(set(_ids(lake, log_table("svc")))) == 50


def test_a_drainer_killed_between_the_two_tables_finishes_exactly_once(tmp_path: Path) -> None:
    """SIGKILL after the log's commit, before the decisions': the next drainer writes only
    the decisions."""
    spool = _spool(tmp_path / "spool", [record() for _ in range(40)])
    code = (
        "import sys; from pathlib import Path; from gristmill.serving.spool import Drainer; "
        "from gristmill.storage.lake import Lake; "
        "Drainer(Path(sys.argv[1]), Lake(Path(sys.argv[2]))).drain()"
    )
    env = {**os.environ, "GRISTMILL_FAILPOINTS": "after_log_commit:svc"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "spool"), str(tmp_path / "lake")], env=env
    )
    assert done.returncode == -signal.SIGKILL
    lake = Lake(tmp_path / "lake")
    assert len(_ids(lake, log_table("svc"))) == 40 and _ids(lake, decisions_table("svc")) == []
    assert Drainer(tmp_path / "spool", lake).drain() == 0  # the log already has them
    assert len(_ids(lake, log_table("svc"))) == 40
    assert len(set(_ids(lake, decisions_table("svc")))) == 40
    spool.close()


def test_a_torn_last_line_of_a_dead_writer_is_kept_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = _spool(tmp_path / "spool", [record() for _ in range(3)])
    os.write(spool.fd, b'["half a row')
    spool.close()
    lake = Lake(tmp_path / "lake")
    drainer = Drainer(tmp_path / "spool", lake)
    assert drainer.drain() == 3
    assert drainer.drain() == 0
    assert [p.suffix for p in (tmp_path / "spool").iterdir() if p.name != ".drain.lock"] == [
        ".torn"
    ]
    assert "not a whole line" in caplog.text


def test_a_full_disk_refuses_the_answer(tmp_path: Path) -> None:
    from gristmill.errors import PredictionLogError

    spool = Spool(tmp_path / "spool")
    os.close(spool.fd)
    spool.fd = os.open("/dev/full", os.O_WRONLY)
    with pytest.raises(PredictionLogError, match="cannot be written"):
        spool.write(encode([record_row(record())]))
    spool.close()


FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
from gristmill.errors import PredictionLogError
from gristmill.serving.log import record_row
from gristmill.serving.spool import Spool, encode
sys.path.insert(0, {tests!r})
from tests.serving.test_spool import record
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
spool = Spool(Path({folder!r}))
written, refused = [], []
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # the disk is "full" at 20 kB
for _ in range(100):
    r = record()
    try:
        spool.write(encode([record_row(r)]))
        written.append(r["request_id"])
    except PredictionLogError:
        refused.append(r["request_id"])
healthy_when_full = spool.healthy
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
for _ in range(5):
    r = record()
    spool.write(encode([record_row(r)]))
    written.append(r["request_id"])
spool.close()
print(json.dumps({{"written": written, "refused": refused, "healthy": healthy_when_full}}))
"""


def test_a_full_disk_cuts_a_half_written_line_so_later_answers_are_logged(tmp_path: Path) -> None:
    """A write the disk refuses halfway is cut back: once there is room, the following
    answers are logged (a half line left in the file used to stop the drainer for good)."""
    import json

    folder = tmp_path / "spool"
    script = textwrap.dedent(FULL_DISK).format(tests=str(Path.cwd()), folder=str(folder))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["refused"] and len(result["written"]) > 5 and result["healthy"] is False
    lake = Lake(tmp_path / "lake")
    assert Drainer(folder, lake).drain() == len(result["written"])
    assert sorted(_ids(lake, log_table("svc"))) == sorted(result["written"])


def test_lines_that_are_not_rows_are_set_aside_and_the_rest_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = _spool(tmp_path / "spool", [record() for _ in range(3)])
    os.write(spool.fd, b'["cut short\n')
    later = [record() for _ in range(4)]
    for r in later:
        spool.write(encode([record_row(r)]))
    spool.close()
    lake = Lake(tmp_path / "lake")
    assert Drainer(tmp_path / "spool", lake).drain() == 7
    assert set(r["request_id"] for r in later) <= set(_ids(lake, log_table("svc")))
    (bad,) = (tmp_path / "spool").glob("*.bad")
    assert bad.read_bytes() == b'["cut short\n' and "not rows" in caplog.text
