"""The lake and the artifact store on object storage: a real S3-compatible server (moto's
server mode, in a process of its own) on loopback, reached the way a user's project
reaches S3 — through the environment's AWS settings."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pyarrow as pa
import pytest

from gristmill.serving.log import log_table
from gristmill.storage.lake import Lake
from gristmill.storage.location import Location
from gristmill.workspace import Workspace
from gristmill.workspace.init import init_project
from tests.conftest import gm, gm_json, write_project

SECRET = "s3cr3t-never-printed-0f9e"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free loopback port; its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(log.read_text()) from None
            time.sleep(0.05)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh bucket; the AWS settings in the environment (this process and the CLI's)."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "gristmill-tests",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = "gm-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    _client().create_bucket(Bucket=bucket)
    return bucket


def _client():  # type: ignore[no-untyped-def]
    return boto3.client("s3")


def _keys(bucket: str, prefix: str = "") -> list[str]:
    pages = _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _on_s3(root: Path, bucket: str) -> None:
    """Point the project's lake and artifacts at the bucket."""
    config = root / "gristmill.toml"
    lines = [
        line
        for line in config.read_text().splitlines()
        if not line.startswith(("lake =", "artifacts ="))
    ]
    lines.insert(1, f'lake = "s3://{bucket}/demo/lake"')
    lines.insert(2, f'artifacts = "s3://{bucket}/demo/artifacts"')
    config.write_text("\n".join(lines) + "\n")


def _sorted(table: pa.Table, *keys: str) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


@pytest.mark.slow
def test_the_example_runs_trains_serves_and_monitors_with_its_lake_on_s3(
    s3: str, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    init_project(local, example="churn", scale="tiny", seed=5)
    remote = tmp_path / "remote"
    init_project(remote, example="churn", scale="tiny", seed=5)
    _on_s3(remote, s3)

    run = gm_json(remote, "run")
    assert run["summary"]["status"] == "success", run["summary"]
    assert not (remote / "lake").exists()  # nothing of the lake is written locally
    keys = _keys(s3, "demo/")
    assert "demo/lake/user_profile/_delta_log/00000000000000000000.json" in keys
    assert any(k.startswith("demo/lake/transactions__quarantine/") for k in keys)
    assert any(k.startswith("demo/artifacts/sha256/") for k in keys)
    assert gm_json(remote, "run")["summary"]["status"] == "noop"

    # the same tables as the same project with a local lake, row for row
    mine = Workspace.open(local)
    assert mine.run().ok
    theirs = Workspace.open(remote)
    for table, keys_ in {
        "user_profile": ("user_id", "as_of"),
        "churn_training": ("user_id", "label_ts"),
        "merchant_category_stats": ("month", "merchant_category", "channel"),
    }.items():
        expected = _sorted(mine.read(table), *keys_)
        got = _sorted(theirs.read(table), *keys_)
        assert got.num_rows == expected.num_rows > 0
        assert got.equals(expected), table
    keys_ = ("_file", "_row")  # the run's own id aside, the same rows for the same reasons
    assert (
        _sorted(theirs.quarantine("transactions"), *keys_)
        .drop(["_run_id"])
        .equals(_sorted(mine.quarantine("transactions"), *keys_).drop(["_run_id"]))
    )
    theirs.close()

    shown = gm_json(remote, "show", "user_profile", "--limit", "3")
    assert len(shown["data"]) == 3
    history = gm_json(remote, "history", "transactions")
    assert [v["version"] for v in history] == [0]
    model = gm_json(remote, "models", "show", "churn", "1")
    assert 0.5 < model["metrics"]["roc_auc"]["value"] <= 1

    promoted = gm(
        remote, "promote", "churn", "1", "--alias", "champion", "--force", "--reason", "tests"
    )
    assert promoted.returncode == 0, promoted.stderr
    scored = gm_json(remote, "score", "churn", "--table", "user_profile")
    assert any(k.startswith("demo/lake/churn__predictions/_delta_log/") for k in _keys(s3))
    # the model trained from the bucket scores as the one trained from a local lake
    mine.models.promote("churn", 1, alias="champion", force=True, reason="tests")
    assert mine.models.score("churn", table="user_profile").rows == scored["rows"] > 0
    theirs = Workspace.open(remote)
    expected = _sorted(mine.read("churn__predictions"), "user_id")
    got = _sorted(theirs.read("churn__predictions"), "user_id")
    assert got.column("score").equals(expected.column("score"))
    assert got.column("user_id").equals(expected.column("user_id"))
    batch = dict(zip(got["user_id"].to_pylist(), got["score"].to_pylist(), strict=True))
    theirs.close()
    mine.close()

    # serving reads its model from the bucket and logs predictions back into it
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gristmill",
            "serve",
            "churn",
            "--no-auth",
            "--port",
            str(port),
            "-p",
            str(remote),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, "the server exited"
                time.sleep(0.05)
        served: list[str] = []
        for user in sorted(batch)[:60]:
            answer = httpx.post(
                f"{url}/v1/services/churn/predict", json={"entity": {"user_id": user}}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["score"] == pytest.approx(batch[user], rel=1e-9)
            served.append(answer.json()["request_id"])
    finally:
        server.send_signal(signal.SIGTERM)  # the log is flushed on the way out
        server.wait(timeout=60)
    assert server.returncode == -signal.SIGTERM  # uvicorn re-raises it after the shutdown
    logged = Workspace.open(remote)
    name = log_table("churn")
    assert any(k.startswith(f"demo/lake/{name}/_delta_log/") for k in _keys(s3))
    log = logged.lake.read(name, logged.lake.latest_version(name) or 0)
    assert sorted(log["request_id"].to_pylist()) == sorted(served)
    logged.close()
    monitors = {m["monitor"]: m for m in gm_json(remote, "monitor", "run")}
    assert monitors["churn_drift"]["state"] == "ok", monitors["churn_drift"]
    assert monitors["churn_live_drift"]["state"] in ("ok", "alert"), monitors
    assert monitors["churn_live_drift"]["rows"] == 60


WRITER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from gristmill.storage.lake import Lake

    lake, writer = Lake(sys.argv[1]), int(sys.argv[2])
    for i in range(int(sys.argv[3])):
        lake.write(
            "shared",
            pa.table({"writer": [writer], "i": [i]}),
            mode="append",
            record={"writer": writer, "i": i},
        )
    """
)


@pytest.mark.slow
def test_concurrent_writers_to_one_table_on_s3_lose_no_commit(s3: str, tmp_path: Path) -> None:
    """Three processes append to one table at once: S3's conditional PUT of the next log
    entry makes each commit exactly one version (no lock table)."""
    url = f"s3://{s3}/lake"
    Lake(url).write(
        "shared", pa.table({"writer": [0], "i": [0]}), mode="append", record={"writer": 0}
    )
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writers = [
        subprocess.Popen([sys.executable, str(script), url, str(w), "12"], stderr=subprocess.PIPE)
        for w in (1, 2, 3)
    ]
    for proc in writers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    lake = Lake(url)
    latest = lake.latest_version("shared")
    assert latest == 36
    rows = lake.read("shared", latest)
    pairs = sorted(zip(rows["writer"].to_pylist(), rows["i"].to_pylist(), strict=True))
    assert pairs == [(0, 0)] + [(w, i) for w in (1, 2, 3) for i in range(12)]
    records = [c.record for c in lake.commits("shared")]
    assert sorted((r or {}).get("writer", -1) for r in records).count(2) == 12


def test_a_remote_versions_files_are_cached_once_and_erased_with_it(
    s3: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    lake = Lake(Location(f"s3://{s3}/lake"), cache=cache)
    lake.write(
        "people",
        pa.table({"user_id": ["u1", "u2", "u3"], "n": [1, 2, 3]}),
        mode="append",
        record={},
    )
    fresh = Lake(Location(f"s3://{s3}/lake"), cache=tmp_path / "other")
    assert fresh.read("people", 0, limit=2).num_rows == 2  # streamed: nothing copied
    assert not (tmp_path / "other").exists()
    files = lake.parquet_files("people", 0)
    assert files and all(Path(f).is_file() and Path(f).is_relative_to(cache) for f in files)
    stamps = [Path(f).stat().st_mtime_ns for f in files]
    assert lake.parquet_files("people", 0) == files  # no second copy
    assert [Path(f).stat().st_mtime_ns for f in files] == stamps
    assert lake.read("people", 0, limit=2).num_rows == 2

    assert "cache/" in " ".join(lake.files_holding("people", "user_id", ["u2"]))
    version, deleted = lake.erase("people", "user_id = 'u2'", {"erasure": "t"})
    assert (version, deleted) == (1, 1)
    assert lake.forget_history("people") > 0
    assert lake.files_holding("people", "user_id", ["u2"]) == []
    assert not any(cache.rglob("*.parquet"))
    assert sorted(lake.read("people", 1)["user_id"].to_pylist()) == ["u1", "u3"]
    assert lake.tables() == ["people"]


def test_a_missing_data_file_on_s3_is_named(s3: str, tmp_path: Path) -> None:
    lake = Lake(Location(f"s3://{s3}/lake"), cache=tmp_path / "cache")
    lake.write("t", pa.table({"a": [1, 2]}), mode="append", record={})
    data = [k for k in _keys(s3, "lake/t/") if k.endswith(".parquet")]
    _client().delete_object(Bucket=s3, Key=data[0])
    assert not lake.has_version("t", 0)
    with pytest.raises(Exception, match=r"table 't' version 0 is missing 1 of its 1 data"):
        lake.parquet_files("t", 0)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('lake = "gs://bucket/lake"', "gs:// is not supported yet"),
        ('lake = "s3://"', "names no bucket"),
        (f'lake = "s3://key:{SECRET}@bucket/lake"', "never in gristmill.toml"),
        (f'artifacts = "s3://key:{SECRET}@bucket/a"', "s3://key:***@bucket/a"),
        ('lake = "s3://bucket//lake"', "the prefix part '' is not supported"),
        ('lake = "s3://bucket/../x"', "the prefix part '..' is not supported"),
        ('lake = "s3://bucket/br[a]/lake"', "the prefix part 'br[a]' is not supported"),
        ('lake = "s3://bucket/sp ace/lake"', "the prefix part 'sp ace' is not supported"),
        ('lake = "s3://bucket/pct%41/lake"', "the prefix part 'pct%41' is not supported"),
        ('lake = "s3://My_Bucket/lake"', "'My_Bucket' is not a bucket name"),
        ('lake = "s3://bucket/lake?x=1"', "a query or a fragment"),
        ('lake = "ftp://host/lake"', "unknown scheme ftp://"),
        ('lake = "s3://gm-no-such-bucket/lake"', "the bucket 'gm-no-such-bucket' does not exist"),
        (
            'artifacts = "s3://gm-no-such-bucket/a"',
            "artifacts = 's3://gm-no-such-bucket/a': the bucket 'gm-no-such-bucket' does not exist",
        ),
    ],
)
def test_bad_object_store_settings_are_refused_clearly(
    s3: str, tmp_path: Path, setting: str, message: str
) -> None:
    root = tmp_path / "p"
    init_project(root, example="churn", scale="tiny", seed=1)
    config = root / "gristmill.toml"
    config.write_text(config.read_text().replace('lake = "lake"', setting, 1))
    proc = gm(root, "run")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in output, output
    if "does not exist" not in message:  # refused as the project loads, with its line
        assert "gristmill.toml:3" in output, output  # the line it replaced
    assert "Traceback" not in output and "internal error" not in output
    assert SECRET not in output


def test_an_unreachable_endpoint_is_a_clear_error(s3: str, tmp_path: Path) -> None:
    root = tmp_path / "p"
    init_project(root, example="churn", scale="tiny", seed=1)
    _on_s3(root, s3)
    proc = subprocess.run(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"},
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert f"cannot reach s3://{s3}/demo/lake" in output, output
    assert "AWS_ENDPOINT_URL" in output  # the hint says where the setting comes from
    assert "Traceback" not in output and SECRET not in output
    plain = {k: v for k, v in os.environ.items() if k != "AWS_ALLOW_HTTP"}
    proc = subprocess.run(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root)],
        capture_output=True, text=True, env=plain, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "the endpoint is plain http://, which needs AWS_ALLOW_HTTP=true" in output, output
    assert "Traceback" not in output and SECRET not in output


def test_spark_on_a_remote_lake_with_a_cluster_master_is_refused_before_anything_runs(
    s3: str, tmp_path: Path
) -> None:
    """A cluster's executors cannot see the driver's staging folder: a remote lake with a
    master other than local[N] is refused (pinned), or kept on DuckDB (auto)."""
    root = tmp_path / "p"
    init_project(root, example="churn", scale="tiny", seed=1)
    _on_s3(root, s3)
    config = root / "gristmill.toml"
    config.write_text(
        config.read_text().replace('engine = "auto"', 'engine = "spark"')
        + '\n[spark]\nmaster = "spark://127.0.0.1:7077"\n'
    )
    proc = gm(root, "run", "--dry-run")
    assert proc.returncode != 0
    assert "Spark with a lake on object storage needs a local master" in proc.stderr, proc.stderr
    assert 'master = "local[4]"' in proc.stderr
    assert _keys(s3) == []  # nothing was written

    config.write_text(
        config.read_text()
        .replace('engine = "spark"', 'engine = "auto"')
        .replace('auto_threshold = "20GB"', 'auto_threshold = "1B"')
    )
    assert gm_json(root, "run", "users", "transactions")["summary"]["status"] == "success"
    plan = gm_json(root, "run", "--dry-run")
    steps = {s["name"]: s for s in plan["steps"]}
    reason = steps["merchant_category_stats"]["engine_reason"]
    assert steps["merchant_category_stats"]["engine"] == "duckdb"
    assert "needs a local master" in reason, reason
    assert json.dumps(plan).count(SECRET) == 0


S3_SPARK_MODULE = """
import gristmill as gm

events = gm.source("events", "data/*.csv", columns={
    "id": "BIGINT", "user_id": "VARCHAR", "day": "DATE", "amount": "DOUBLE"})
totals = gm.table("totals", sql="SELECT user_id, count(*) AS n, sum(amount) AS total "
                  "FROM events GROUP BY user_id")
checked = gm.table("checked", sql="SELECT id, user_id, amount FROM events",
                   checks=[gm.in_range("amount", min=10)], max_quarantine_share=0.9)
daily = gm.table("daily", partitions=gm.daily("day", start="2026-11-01", batch=3),
                 sql="SELECT day, user_id, sum(amount) AS total FROM events GROUP BY ALL")
"""
S3_SPARK_CSV = "id,user_id,day,amount\n" + "".join(
    f"{i},u{i % 5},2026-11-{1 + i % 9:02d},{i * 1.25}\n" for i in range(1, 200)
)


@pytest.mark.spark
def test_spark_steps_on_a_lake_on_s3_equal_duckdb_s_on_a_local_lake(
    s3: str, tmp_path: Path
) -> None:
    """Spark with a local master over a lake on S3: inputs read from the driver's copies;
    what the executors write staged on its disk, uploaded and committed by the lake (a
    plain step, a checked step with its quarantine, a partitioned step finished by
    DuckDB). The same tables as DuckDB's on a local lake, and no staged file left."""
    built = {}
    for engine in ("duckdb", "spark"):
        toml = f'name = "t"\nengine = "{engine}"\n'
        root = write_project(
            tmp_path / engine, module=S3_SPARK_MODULE, sql={}, data={"a.csv": S3_SPARK_CSV},
            toml=toml,
        )  # fmt: skip
        if engine == "spark":
            _on_s3(root, s3)
        run = gm_json(root, "run")
        assert run["summary"]["status"] == "success", run["summary"]
        built[engine] = Workspace.open(root)
    ours, theirs = built["spark"], built["duckdb"]
    steps = {s["table"]: s["engine"] for s in ours.run_info(ours.runs()[0].run_id).steps}
    assert steps["totals"] == steps["checked"] == steps["daily"] == "spark", steps
    assert not (ours.root / "lake").exists()
    for name, keys in (
        ("totals", ("user_id",)),
        ("checked", ("id",)),
        ("daily", ("day", "user_id")),
    ):
        assert _sorted(ours.read(name), *keys).equals(_sorted(theirs.read(name), *keys)), name
    assert ours.quarantine("checked").num_rows == theirs.quarantine("checked").num_rows == 7
    keys = _keys(s3, "demo/lake/")
    assert any(k.startswith("demo/lake/totals/gm-") and "part-" in k for k in keys), keys
    staging = ours.root / ".gristmill" / "lake-staging"
    assert not staging.exists() or not any(staging.rglob("*.parquet"))
