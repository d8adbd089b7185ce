"""Stream sources over the real NATS JetStream server of this machine (127.0.0.1:4222)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable

from gristmill.errors import DefinitionError
from gristmill.workspace import Workspace
from tests.conftest import gm, gm_json

NATS = "nats://127.0.0.1:4222"


async def _publish(stream: str, payloads: list[bytes], subject: str) -> None:
    import nats

    client = await nats.connect(NATS)
    js = client.jetstream()
    for start in range(0, len(payloads), 1000):  # acknowledged by the server in windows
        acks = [
            await js.publish_async(subject, p) if hasattr(js, "publish_async") else None
            for p in payloads[start : start + 1000]
        ]
        if acks and acks[0] is not None:
            await asyncio.gather(*acks)
    await client.flush()
    await client.close()


def publish(stream: str, payloads: list[bytes | dict[str, object]], subject: str = "") -> None:
    raw = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in payloads]
    asyncio.run(_publish(stream, raw, subject or f"{stream.lower()}.in"))


async def _admin(stream: str, create: bool) -> None:
    import nats
    from nats.js.api import StreamConfig

    client = await nats.connect(NATS)
    js = client.jetstream()
    if create:
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"]))
    else:
        await js.delete_stream(stream)
    await client.close()


@pytest.fixture
def stream() -> Iterator[str]:
    """A new JetStream stream (subjects ``<name>.>``); deleted afterwards."""
    name = f"GM{uuid.uuid4().hex[:8].upper()}"
    asyncio.run(_admin(name, True))
    try:
        yield name
    finally:
        asyncio.run(_admin(name, False))


def project(root: Path, stream: str, **settings: str) -> Path:
    args = {
        "url": f'"{NATS}"',
        "stream": f'"{stream}"',
        "subject": f'"{stream.lower()}.>"',
        "columns": '{"id": "BIGINT", "user": "VARCHAR", "amount": "DOUBLE", "_sequence": "BIGINT"}',
        "checks": '[gm.not_null("id")]',
        "batch_wait": '"0.2s"',
        **settings,
    }
    body = ",\n    ".join(f"{k}={v}" for k, v in args.items())
    root.mkdir(parents=True, exist_ok=True)
    (root / "gristmill.toml").write_text('name = "streams"\n')
    (root / "pipeline.py").write_text(
        "import gristmill as gm\n\n"
        + textwrap.dedent(f'events = gm.stream_source(\n    "events",\n    {body},\n)\n')
    )
    return root


def landed(ws: Workspace) -> dict[int, tuple[object, ...]]:
    table = ws.read("events")
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), "a message landed twice"
    rows = zip(table["user"].to_pylist(), table["amount"].to_pylist(), strict=True)
    return dict(zip(ids, rows, strict=True))


def event(i: int) -> dict[str, object]:
    return {"id": i, "user": f"u{i % 5}", "amount": i / 2}


def test_messages_land_once_bad_ones_quarantined_with_their_sequence(
    tmp_path: Path, stream: str
) -> None:
    publish(stream, [event(i) for i in range(100)])
    publish(stream, [b"not json{", b"[1, 2]", b'{"id": "seven"}', b"\xff\xfe", b'{"user": "x"}'])
    ws = Workspace.open(project(tmp_path / "p", stream))
    outcome = ws.run()
    assert outcome.ok, outcome.result.error()
    step = outcome.result.steps[0]
    assert (step.rows_added, step.quarantined) == (100, 5)
    assert step.quarantine_counts == {
        "message: not JSON": 1,
        "message: not a JSON object": 1,
        "message: not UTF-8 text": 1,
        "not_null(id)": 1,
        "type(id BIGINT)": 1,
    }
    assert landed(ws) == {i: (f"u{i % 5}", i / 2) for i in range(100)}
    assert sorted(ws.read("events")["_sequence"].to_pylist()) == list(range(1, 101))
    quarantine = ws.quarantine("events")
    rows = sorted(
        zip(quarantine["_row"].to_pylist(), quarantine["_checks"].to_pylist(), strict=True)
    )
    assert rows == [
        (101, ["message: not JSON"]),
        (102, ["message: not a JSON object"]),
        (103, ["type(id BIGINT)"]),
        (104, ["message: not UTF-8 text"]),
        (105, ["not_null(id)"]),
    ]
    assert set(quarantine["_file"].to_pylist()) == {f"{stream}:{stream.lower()}.in"}
    # the last sequence rides in the same Delta commit as the rows
    lake = DeltaTable(str(ws.lake.path("events")))
    assert lake.transaction_version("gristmill.stream.events") == 105
    assert ws.catalog.latest("events").stats["source"]["sequence"] == 105

    again = Workspace.open(ws.root).run()  # the bad messages do not block: nothing is new
    assert again.result.status == "noop"
    assert "no messages past sequence 105" in again.result.steps[0].reason

    publish(stream, [event(i) for i in range(100, 150)])
    ws = Workspace.open(ws.root)
    assert ws.plan().step("events").reason == "50 message(s) past sequence 105"
    third = ws.run()
    assert third.ok and third.result.steps[0].mode == "append"
    assert third.result.steps[0].rows_added == 50
    assert landed(ws) == {i: (f"u{i % 5}", i / 2) for i in range(150)}


def test_keyed_stream_keeps_the_newest_message_per_key(tmp_path: Path, stream: str) -> None:
    publish(stream, [{"id": i % 10, "user": f"v{i}", "amount": i} for i in range(35)])
    ws = Workspace.open(project(tmp_path / "p", stream, primary_key='"id"'))
    assert ws.run().ok
    newest = {i % 10: (f"v{i}", float(i)) for i in range(35)}
    assert landed(ws) == newest
    publish(stream, [{"id": 3, "user": "late", "amount": 1}, {"id": 42, "user": "n", "amount": 2}])
    ws = Workspace.open(ws.root)
    outcome = ws.run()
    assert outcome.ok and outcome.result.steps[0].mode == "merge"
    assert landed(ws) == {**newest, 3: ("late", 1.0), 42: ("n", 2.0)}


def test_batch_rows_bounds_a_commit_and_full_refresh_reads_from_the_start(
    tmp_path: Path, stream: str
) -> None:
    publish(stream, [event(i) for i in range(250)])
    ws = Workspace.open(project(tmp_path / "p", stream, batch_rows="100"))
    sizes = []
    for _ in range(4):
        outcome = Workspace.open(ws.root).ingest(["events"])
        sizes.append(outcome.result.steps[0].rows_added)
    assert sizes == [100, 100, 50, None]  # the fourth finds nothing and is skipped
    assert len(landed(ws)) == 250
    refreshed = Workspace.open(ws.root).ingest(["events"], full_refresh=True)
    assert refreshed.result.steps[0].mode == "overwrite"
    assert sorted(landed(Workspace.open(ws.root))) == list(range(100))


@pytest.mark.parametrize("point", ["after_extract", "before_ack", "after_commit"])
def test_killed_at_each_point_then_resumed_lands_every_message_once(
    tmp_path: Path, stream: str, point: str
) -> None:
    publish(stream, [event(i) for i in range(300)])
    root = project(tmp_path / "p", stream)
    assert Workspace.open(root).run().ok
    publish(stream, [event(i) for i in range(300, 500)])
    killed = subprocess.run(
        [sys.executable, "-m", "gristmill", "ingest", "events", "-p", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "GRISTMILL_FAILPOINTS": f"{point}:events"},
    )
    assert killed.returncode == -signal.SIGKILL
    publish(stream, [event(i) for i in range(500, 520)])
    ws = Workspace.open(root)
    assert ws.run().ok
    assert sorted(landed(ws)) == list(range(520))
    history = ws.catalog.history("events")
    sequences = [m.stats["source"]["sequence"] for m in history]
    assert sequences == sorted(set(sequences)), sequences


def test_sigkill_at_random_moments_while_publishing_loses_and_doubles_nothing(
    tmp_path: Path, stream: str
) -> None:
    """20,000 messages published while `ingest --follow` is killed at random moments
    and started again: every message lands exactly once."""
    root = project(tmp_path / "p", stream, batch_rows="3000")
    total = 20_000
    publisher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import asyncio, json, nats
                async def main():
                    c = await nats.connect("{NATS}"); js = c.jetstream()
                    for start in range(0, {total}, 500):
                        acks = [await js.publish_async("{stream.lower()}.in",
                                json.dumps({{"id": i, "user": "u", "amount": i}}).encode())
                                for i in range(start, start + 500)]
                        await asyncio.gather(*acks)
                        await asyncio.sleep(0.02)
                    await c.close()
                asyncio.run(main())
                """
            ),
        ]
    )
    rng = random.Random(13)
    try:
        for _ in range(6):
            follower = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gristmill",
                    "ingest",
                    "events",
                    "--follow",
                    "--interval",
                    "0.1",
                    "-p",
                    str(root),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.8, 3.0))
            follower.send_signal(signal.SIGKILL)
            follower.wait()
    finally:
        assert publisher.wait(timeout=120) == 0
    for _ in range(20):  # what is left, in batches of 3,000
        if Workspace.open(root).ingest(["events"]).result.status == "noop":
            break
    ws = Workspace.open(root)
    ids = ws.read("events")["id"].to_pylist()
    assert len(ids) == total and len(set(ids)) == total
    sequences = ws.read("events")["_sequence"].to_pylist()
    assert sorted(sequences) == list(range(1, total + 1))


def test_pii_fields_of_a_stream_are_pseudonymized(tmp_path: Path, stream: str) -> None:
    root = project(
        tmp_path / "p",
        stream,
        columns='{"id": "BIGINT", "user": "VARCHAR", "amount": "DOUBLE", "email": "VARCHAR"}',
        pii='{"email": "email"}',
    )
    (root / "gristmill.toml").write_text('name = "streams"\n[pii]\nkey_env = "GM_TEST_PII_KEY"\n')
    publish(
        stream,
        [
            {"id": 1, "user": "a", "amount": 1, "email": "Ann@Example.com"},
            {"id": 2, "user": "b", "amount": 2, "email": " ann@example.com "},
            {"id": "bad", "user": "c", "amount": 3, "email": "carl@example.com"},
        ],
    )
    os.environ["GM_TEST_PII_KEY"] = "k" * 32
    try:
        ws = Workspace.open(root)
        assert ws.run().ok
    finally:
        del os.environ["GM_TEST_PII_KEY"]
    emails = ws.read("events")["email"].to_pylist()
    assert emails[0] == emails[1] and len(emails[0]) == 64 and "@" not in emails[0]
    quarantined = ws.quarantine("events")["email"].to_pylist()
    assert len(quarantined) == 1 and "carl" not in quarantined[0]
    for path in Path(ws.lake.path("events")).rglob("*"):
        if path.is_file():
            assert b"example.com" not in path.read_bytes().lower(), path


def test_sources_shows_the_stream_state_and_new_data_starts_a_run(
    tmp_path: Path, stream: str
) -> None:
    root = project(tmp_path / "p", stream)
    (root / "pipeline.py").write_text(
        (root / "pipeline.py").read_text()
        + 'landed = gm.sensor("landed", on=gm.new_data("events"), select="events+", '
        'min_interval="0s")\n'
    )
    (root / "sql").mkdir()
    (root / "sql" / "totals.sql").write_text("select count(*) as n from events\n")
    publish(stream, [event(i) for i in range(7)])
    assert Workspace.open(root).run().ok
    [info] = gm_json(root, "sources")
    assert info["kind"] == "stream"
    assert info["reads"] == f"{NATS} {stream} {stream.lower()}.>"
    assert info["state"]["sequence"] == 7 and info["state"]["messages"] == 7
    assert 0 <= info["behind_s"] < 120
    quiet = gm_json(root, "scheduler", "--once")
    assert quiet["queued_by_triggers"] == [] and quiet["ran"] == []
    publish(stream, [event(i) for i in range(7, 10)])
    tick = gm_json(root, "scheduler", "--once")
    (fired,) = [t for t in tick["queued_by_triggers"] if t.get("sensor") == "landed"]
    assert fired["reason"] == "events: 3 message(s) past sequence 7"
    assert [r["status"] for r in tick["ran"]] == ["success"]
    assert Workspace.open(root).read("totals")["n"].to_pylist() == [10]


def test_unreachable_server_missing_stream_and_bad_definitions_say_what_to_do(
    tmp_path: Path, stream: str
) -> None:
    down = project(tmp_path / "down", stream, url='"nats://127.0.0.1:1"')
    outcome = Workspace.open(down).run()
    error = outcome.result.steps[0].error or {}
    assert "cannot reach NATS at 127.0.0.1:1" in error["message"], error
    assert error["transient"] is True

    missing = project(tmp_path / "missing", "NOSUCHSTREAM", subject='"x.>"')
    proc = gm(missing, "run")
    assert proc.returncode == 1
    assert "has no stream 'NOSUCHSTREAM'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr

    for settings, expected in [
        ({"url": '"nats://app:hunter2@127.0.0.1:4222"'}, "holds a password"),
        ({"url": '"kafka://127.0.0.1:9092"'}, "unsupported stream 'kafka'"),
        ({"url": '"nats://127.0.0.1:4222?password=hunter2"'}, "the URL holds a password"),
        ({"subject": '"a.>.b"'}, "not a NATS subject filter"),
        ({"columns": "{}"}, "columns= is needed"),
        ({"format": '"avro"'}, "format='avro' is not supported"),
        ({"primary_key": '"nope"'}, "primary_key= names 'nope'"),
        ({"batch_rows": "0"}, "batch_rows must be a whole number"),
        ({"columns": '{"id": "BIGINT", "_sequence": "VARCHAR"}'}, "holds the message's"),
    ]:
        bad = project(tmp_path / f"bad{len(expected)}", stream, **settings)
        with pytest.raises(DefinitionError) as info:
            Workspace.open(bad)
        assert expected in info.value.message
        assert "hunter2" not in str(info.value)


FEATURES = """
activity = gm.stream_features(
    "activity",
    source="events",
    entity="user",
    timestamp="at",
    latest=["amount"],
    windows={
        "events_1h": gm.window("count", "1h"),
        "spent_1h": gm.window("sum", "1h", of="amount"),
        "spent_1d": gm.window("sum", "1d", of="amount"),
        "biggest_1d": gm.window("max", "1d", of="amount"),
    },
)
"""


def as_online(row: dict[str, object]) -> dict[str, object]:
    """A view's row as the online store answers it: without the entity, times as text."""
    return {k: str(v) if hasattr(v, "isoformat") else v for k, v in row.items() if k != "user"}


def activity_events(start: int, count: int) -> list[dict[str, object]]:
    """Events of five users, 10 minutes apart per user, amounts that make sums exact."""
    out = []
    for i in range(start, start + count):
        minutes = 10 * (i // 5)
        out.append(
            {
                "id": i,
                "user": f"u{i % 5}",
                "amount": float(i % 7),
                "at": f"2026-11-30T{minutes // 60:02d}:{minutes % 60:02d}:00",
            }
        )
    return out


def test_stream_features_online_equal_the_batch_view_and_follow_new_events(
    tmp_path: Path, stream: str
) -> None:
    root = project(
        tmp_path / "p",
        stream,
        columns='{"id": "BIGINT", "user": "VARCHAR", "amount": "DOUBLE", "at": "TIMESTAMP"}',
    )
    (root / "pipeline.py").write_text((root / "pipeline.py").read_text() + FEATURES)
    publish(stream, activity_events(0, 100))
    ws = Workspace.open(root)
    assert ws.run().ok
    users = [f"u{i}" for i in range(5)]
    # the batch view, built by the run, is what the online store holds
    batch = {r["user"]: r for r in ws.read("activity").to_pylist()}
    online = dict(zip(users, ws.lookup("activity", users), strict=True))
    for user in users:
        assert online[user] == as_online(batch[user])
    # by hand: u1's events are 1, 6, 11, ..., 96 at 10-minute steps; the last is 96 at
    # 03:10, the hour before it holds 71, 76, 81, 86, 91, 96 (not 66 at 02:10: exclusive)
    u1 = [i for i in range(100) if i % 5 == 1]
    assert batch["u1"]["events_1h"] == 6
    assert batch["u1"]["spent_1h"] == sum(float(i % 7) for i in u1 if i >= 71)
    assert batch["u1"]["spent_1d"] == sum(float(i % 7) for i in u1)
    assert batch["u1"]["amount"] == float(96 % 7)

    # new events only land (ingest): the online rows of the users they touch follow at
    # once, and equal the view that the next run builds over the same rows
    publish(stream, activity_events(100, 3))  # u0, u1, u2
    ws = Workspace.open(root)
    assert ws.ingest(["events"]).ok
    pushed = dict(zip(users, ws.lookup("activity", users), strict=True))
    assert pushed["u3"] == online["u3"] and pushed["u4"] == online["u4"]
    assert pushed["u0"] != online["u0"]
    assert Workspace.open(root).run().ok
    rebuilt = {r["user"]: r for r in Workspace.open(root).read("activity").to_pylist()}
    for user in users:
        assert pushed[user] == as_online(rebuilt[user])


def test_a_published_event_reaches_lookup_within_seconds_with_follow(
    tmp_path: Path, stream: str
) -> None:
    root = project(
        tmp_path / "p",
        stream,
        columns='{"id": "BIGINT", "user": "VARCHAR", "amount": "DOUBLE", "at": "TIMESTAMP"}',
        batch_wait='"0.1s"',
    )
    (root / "pipeline.py").write_text((root / "pipeline.py").read_text() + FEATURES)
    publish(stream, activity_events(0, 10))
    assert Workspace.open(root).run().ok
    follower = subprocess.Popen(
        [sys.executable, "-m", "gristmill", "ingest", "events", "--follow", "--interval",
         "0.1", "-p", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(2)  # started and idle
        latencies = []
        for n in range(3):
            event = {"id": 1000 + n, "user": "fresh", "amount": float(n + 1),
                     "at": f"2026-12-01T00:0{n}:00"}  # fmt: skip
            sent = time.perf_counter()
            publish(stream, [event])
            while True:
                (found,) = Workspace.open(root).lookup("activity", ["fresh"])
                if found is not None and found["events_1h"] == n + 1:
                    latencies.append(time.perf_counter() - sent)
                    break
                assert time.perf_counter() - sent < 20, "the event never reached lookup"
                time.sleep(0.05)
        print(f"publish -> lookup: {', '.join(f'{s:.2f}s' for s in latencies)}")
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=30)


def test_follow_prints_a_json_line_per_extraction_and_stops_cleanly_on_sigterm(
    tmp_path: Path, stream: str
) -> None:
    root = project(tmp_path / "p", stream)
    follower = subprocess.Popen(
        [sys.executable, "-m", "gristmill", "ingest", "events", "--follow", "--interval",
         "0.1", "--json", "-p", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        publish(stream, [event(i) for i in range(5)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ws = Workspace.open(root)
            if ws.catalog.latest("events") and ws.read("events").num_rows == 5:
                break
            time.sleep(0.1)
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert "SIGTERM: stopping after the current run" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and all(set(line) == {"run_id", "summary", "steps"} for line in lines)
    landed = [line for line in lines if line["summary"]["rows_written"]]
    assert sum(line["summary"]["rows_written"] for line in landed) == 5


def test_a_stream_sensor_does_not_queue_a_second_run_while_its_run_is_queued(
    tmp_path: Path, stream: str
) -> None:
    """The pending count a stream reports changes while its run reads it; the sensor
    waits for its run instead of queuing another for the same messages."""
    root = project(tmp_path / "p", stream)
    (root / "pipeline.py").write_text(
        (root / "pipeline.py").read_text()
        + 'landed = gm.sensor("landed", on=gm.new_data("events"), select="events+", '
        'min_interval="0s")\n'
    )
    publish(stream, [event(i) for i in range(7)])
    assert Workspace.open(root).run().ok
    ws = Workspace.open(root)
    assert ws.scheduler.tick().fired == []  # starts watching: nothing new
    publish(stream, [event(i) for i in range(7, 10)])
    (fired,) = ws.scheduler.tick().fired
    assert fired["reason"] == "events: 3 message(s) past sequence 7"
    publish(stream, [event(i) for i in range(10, 12)])  # the news changes; its run waits
    assert ws.scheduler.tick().fired == []
    (state,) = [s for s in ws.scheduler.sensors() if s.name == "landed"]
    assert state.reason.endswith(f"its run {fired['run_id'][:8]} is queued"), state.reason
    done = gm_json(root, "scheduler", "--once")  # runs it: all 12 messages land
    assert done["queued_by_triggers"] == [] and [r["status"] for r in done["ran"]] == ["success"]
    assert Workspace.open(root).read("events").num_rows == 12
    assert Workspace.open(root).scheduler.tick().fired == []  # nothing new after it
