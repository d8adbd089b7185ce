from pathlib import Path

import pyarrow as pa
import pytest

from gristmill.errors import VersionNotFoundError
from gristmill.storage.lake import Lake


def test_versions_are_immutable_and_readable(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    assert lake.latest_version("t") is None
    v0 = lake.write("t", pa.table({"x": [1, 2]}), mode="overwrite", record={"run_id": "a"})
    v1 = lake.write("t", pa.table({"x": [3]}), mode="append", record={"run_id": "b"})
    v2 = lake.write("t", pa.table({"y": ["z"]}), mode="overwrite", record={"run_id": "c"})
    assert [(w.version, w.rows) for w in (v0, v1, v2)] == [(0, 2), (1, 1), (2, 1)]
    assert v2.schema.names == ["y"]
    assert lake.read("t", 0).to_pydict() == {"x": [1, 2]}
    assert sorted(lake.read("t", 1)["x"].to_pylist()) == [1, 2, 3]
    assert lake.read("t", 2).to_pydict() == {"y": ["z"]}
    assert lake.count("t", 1) == 3
    assert [c.record["run_id"] for c in lake.commits("t")] == ["a", "b", "c"]
    assert [c.version for c in lake.commits("t", after=0)] == [1, 2]
    assert lake.has_commit_after("t", 1) and not lake.has_commit_after("t", 2)


def test_missing_version(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write("t", pa.table({"x": [1]}), mode="overwrite", record={})
    with pytest.raises(VersionNotFoundError, match="no version 5"):
        lake.read("t", 5)


READ_AND_EXIT = """
import sys
from pathlib import Path
from gristmill.storage.lake import Lake
lake = Lake(Path(sys.argv[1]))
limit = int(sys.argv[2]) or None
print(lake.read("log", lake.latest_version("log"), limit=limit).num_rows)
"""


def test_a_process_that_read_a_many_file_table_exits_cleanly(tmp_path: Path) -> None:
    """Reading through delta-rs's Python file system left Arrow read-ahead threads that
    aborted the interpreter at exit (exit 134, or a segfault after a head read)."""
    import subprocess
    import sys

    lake = Lake(tmp_path)
    for i in range(150):  # like a prediction log: a small commit a second
        lake.write("log", pa.table({"i": list(range(i * 20, i * 20 + 20))}), mode="append",
                   record={"kind": "test"})  # fmt: skip
    for limit in ("0", "5"):
        for _ in range(4):
            done = subprocess.run(
                [sys.executable, "-c", READ_AND_EXIT, str(tmp_path), limit],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, (done.returncode, done.stderr[-500:])
            assert int(done.stdout) == (5 if limit == "5" else 3000)


def test_expired_log_files_go_at_a_checkpoint_and_old_versions_say_so(tmp_path: Path) -> None:
    """The log is cleaned when a commit wrote a checkpoint (delta-rs's cleanup after every
    commit listed the whole log folder each time); what is cleaned reads as a missing
    version, not as a missing table."""
    from deltalake import write_deltalake

    retention = {
        "delta.checkpointInterval": "5",
        "delta.logRetentionDuration": "interval 0 seconds",
    }
    write_deltalake(str(tmp_path / "t"), pa.table({"x": [0]}), configuration=retention)
    lake = Lake(tmp_path)
    log = tmp_path / "t" / "_delta_log"
    for i in range(1, 4):
        lake.write("t", pa.table({"x": [i]}), mode="overwrite", record={})
    assert (log / f"{0:020d}.json").exists()  # no checkpoint yet: everything kept
    assert lake.read("t", 1).to_pydict() == {"x": [1]}
    for i in range(4, 8):
        lake.write("t", pa.table({"x": [i]}), mode="overwrite", record={})
    checkpoints = sorted(p.name for p in log.glob("*.checkpoint.parquet"))
    assert len(checkpoints) == 1
    first_kept = int(checkpoints[0].split(".")[0])
    assert not (log / f"{0:020d}.json").exists()
    assert lake.read("t", 7).to_pydict() == {"x": [7]}
    assert lake.read("t", first_kept).to_pydict() == {"x": [first_kept]}
    with pytest.raises(VersionNotFoundError, match="no version 1 any more"):
        lake.read("t", 1)


def _files(lake: Lake, name: str) -> set[str]:
    from deltalake import DeltaTable

    return set(DeltaTable(str(lake.path(name))).file_uris())


def test_a_merge_rewrites_only_the_files_its_keys_fall_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltalake import DeltaTable

    import gristmill.storage.lake as lake_module

    assert lake_module.MERGED_FILE_SIZE == 16 * 1024 * 1024  # as docs/sources.md says
    monkeypatch.setattr(lake_module, "MERGED_FILE_SIZE", 64 * 1024)  # many small files
    lake = Lake(tmp_path)
    n = 100_000
    ids = pa.array(range(1, n + 1), pa.int64())
    lake.write("t", pa.table({"id": ids, "v": ids}), mode="overwrite", record={}, merged=True)
    before = _files(lake, "t")
    assert len(before) >= 5
    configuration = DeltaTable(str(lake.path("t"))).metadata().configuration
    assert configuration["delta.targetFileSize"] == str(64 * 1024)  # which merges follow
    # the file holding id 1 made unreadable: a merge of the newest keys must not open it
    actions = pa.table(DeltaTable(str(lake.path("t"))).get_add_actions(flatten=True)).to_pydict()
    first = lake.path("t") / actions["path"][actions["min.id"].index(1)]
    kept = first.read_bytes()
    first.write_bytes(b"not parquet")
    newest = pa.table({"id": pa.array([n - 1, n, n + 1], pa.int64()), "v": [-1, -2, -3]})
    stream = pa.RecordBatchReader.from_batches(newest.schema, newest.to_batches())
    written = lake.merge("t", stream, keys=("id",), record={"run_id": "m"})
    assert written.rows == 3
    after = _files(lake, "t")
    assert len(before - after) == 1  # the one file holding ids n-1 and n
    first.write_bytes(kept)
    table = lake.read("t", written.version)
    assert dict(zip(table["id"].to_pylist(), table["v"].to_pylist(), strict=True)) == {
        **{i: i for i in range(1, n - 1)},
        n - 1: -1,
        n: -2,
        n + 1: -3,
    }
    last = actions["path"][actions["max.id"].index(n)]
    assert [p for p in before - after if p.endswith(last)]  # the rewritten one
    assert not any((tmp_path / lake_module.STAGING_FOLDER).iterdir())  # no file has a name


def test_a_merge_by_string_or_null_keys_matches_every_key_once(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    keys = ["a", "it's", "z", None]
    lake.write("t", pa.table({"k": keys, "v": [1, 2, 3, 4]}), mode="overwrite", record={})
    for round_ in (1, 2):  # a NULL key is a key: matched, not landed again
        rows = pa.table({"k": ["it's", None, "new"], "v": [20, 40, 50]})
        stream = pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches())
        written = lake.merge("t", stream, keys=("k",), record={"round": round_})
        got = lake.read("t", written.version).to_pydict()
        assert sorted(zip(got["k"], got["v"], strict=True), key=str) == sorted(
            [("a", 1), ("it's", 20), ("z", 3), (None, 40), ("new", 50)], key=str
        )
    quoted = pa.table({"k": ["it's"], "v": [21]})  # the range's literal holds a quote
    written = lake.merge("t", quoted, keys=("k",), record={})
    got = lake.read("t", written.version).to_pydict()
    assert dict(zip(got["k"], got["v"], strict=True))["it's"] == 21 and len(got["k"]) == 5
