"""Stream source benchmark (not a test). Run with `make bench-streams` or:

    benchmarks/.venv/bin/python benchmarks/streams.py [--messages 300000] [--rounds 3]

N JSON messages (8 fields) in a NATS JetStream stream on the local server, landed by:

- plain: a nats-py durable pull consumer (batches of 10,000) whose payloads are parsed
  with json.loads and written to Parquet every 100,000 messages; no contract, no table
  format, no acknowledgement, no state: no guarantee at all;
- gristmill: `gm.stream_source(...)` with the 8 columns declared (the contract types them
  and quarantines bad messages), `gristmill ingest` again and again (100,000 messages per
  commit) into a Delta table, each commit carrying the last sequence, acknowledged after.

Both read the same stream in each round, each in its own subprocess; rounds interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results import dispatch_worker, median, peak_rss_mb, run_worker, write_section  # noqa: E402

NATS = "nats://127.0.0.1:4222"
BATCH = 100_000


def worker(name: str, *args: str) -> dict:
    return run_worker(__file__, name, *args, timeout=3600)


def message(i: int) -> bytes:
    return json.dumps(
        {
            "id": i,
            "user_id": i % 100_000,
            "country": ("de", "fr", "us", "jp")[i % 4],
            "amount": (i % 10_000) / 100,
            "score": (i % 997) / 997,
            "items": i % 50,
            "paid": i % 3 == 0,
            "at": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00",
        }
    ).encode()


async def _make_stream(stream: str, messages: int) -> None:
    import nats
    from nats.js.api import StreamConfig

    client = await nats.connect(NATS)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"]))
    for start in range(0, messages, 5_000):
        acks = [
            await js.publish_async(f"{stream.lower()}.in", message(i))
            for i in range(start, min(start + 5_000, messages))
        ]
        await asyncio.gather(*acks)
    await client.close()


async def _drop_stream(stream: str) -> None:
    import nats

    client = await nats.connect(NATS)
    await client.jetstream().delete_stream(stream)
    await client.close()


# ---- workers ---------------------------------------------------------------------------


def w_plain(stream: str, messages: str) -> dict:
    import nats
    import nats.errors
    import pyarrow as pa
    import pyarrow.parquet as pq

    async def consume(folder: str) -> int:
        client = await nats.connect(NATS)
        js = client.jetstream()
        from nats.js.api import AckPolicy, ConsumerConfig

        subscription = await js.pull_subscribe(
            f"{stream.lower()}.>",
            durable="plain",
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, max_ack_pending=-1),
        )
        rows: list[dict] = []
        landed = part = 0
        while landed < int(messages):
            try:
                batch = await subscription.fetch(10_000, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            rows.extend(json.loads(m.data) for m in batch)
            if len(rows) >= BATCH or landed + len(rows) >= int(messages):
                pq.write_table(pa.Table.from_pylist(rows), f"{folder}/part-{part}.parquet")
                landed += len(rows)
                part += 1
                rows = []
        await client.close()
        return landed

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        landed = asyncio.run(consume(tmp))
        seconds = time.perf_counter() - start
    assert landed == int(messages), landed
    return {"seconds": seconds, "rows": landed, "rss_mb": peak_rss_mb()}


def w_gristmill(stream: str, messages: str) -> dict:
    from gristmill.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        root.mkdir()
        (root / "gristmill.toml").write_text('name = "bench"\n')
        (root / "pipeline.py").write_text(
            "import gristmill as gm\n"
            f'events = gm.stream_source("events", url="{NATS}", stream="{stream}", '
            "columns={'id': 'BIGINT', 'user_id': 'BIGINT', 'country': 'VARCHAR', "
            "'amount': 'DOUBLE', 'score': 'DOUBLE', 'items': 'INTEGER', 'paid': 'BOOLEAN', "
            f"'at': 'TIMESTAMP'}}, batch_rows={BATCH}, batch_wait='0.5s')\n"
        )
        start = time.perf_counter()
        commits = 0
        ws = Workspace.open(root)
        while True:
            outcome = ws.ingest(["events"])
            assert outcome.ok, outcome.result.error()
            if outcome.result.status == "noop":
                break
            commits += 1
            if ws.catalog.latest("events").stats["source"]["sequence"] >= int(messages):
                break
        seconds = time.perf_counter() - start
        table = ws.read("events")
        assert table.num_rows == int(messages), table.num_rows
    return {"seconds": seconds, "rows": table.num_rows, "commits": commits, "rss_mb": peak_rss_mb()}


# ---- the benchmark ---------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    contenders = ["plain", "gristmill"]
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    for round_ in range(args.rounds):
        stream = f"BENCH{uuid.uuid4().hex[:8].upper()}"
        asyncio.run(_make_stream(stream, args.messages))
        try:
            order = contenders if round_ % 2 == 0 else contenders[::-1]
            for name in order:
                runs[name].append(worker(name, stream, str(args.messages)))
        finally:
            asyncio.run(_drop_stream(stream))
    lines = []
    rates = {}
    for name in contenders:
        seconds = median([r["seconds"] for r in runs[name]])
        rates[name] = args.messages / seconds
        per_round = ", ".join(f"{r['seconds']:.2f}" for r in runs[name])
        rss = median([r["rss_mb"] for r in runs[name]])
        lines.append(f"| {name} | {seconds:.2f} | {per_round} | {rates[name]:,.0f} | {rss:,.0f} |")
    ratio = rates["gristmill"] / rates["plain"]
    body = (
        "## Stream sources\n\n"
        f"{args.messages:,} JSON messages (8 fields) from the local NATS JetStream server; "
        f"each contender in its own process, {args.rounds} interleaved rounds, medians. "
        "plain: a nats-py pull consumer, json.loads, Parquet every 100,000 messages, no "
        "guarantee; gristmill: a stream source (contract, Delta, the last sequence in each "
        "commit, acknowledged after it), `ingest` repeated, 100,000 messages per commit.\n\n"
        "| contender | seconds | per round | messages/s | peak RSS MB |\n"
        "|---|---:|---|---:|---:|\n" + "\n".join(lines) + "\n\n"
        f"gristmill / plain sustained rate: **{ratio:.2f}x** (target ≥ 0.8x: "
        f"{'met' if ratio >= 0.8 else 'not met'}).\n"
    )
    write_section("streams", body)
    print(body)


if __name__ == "__main__":
    if not dispatch_worker(globals()):
        main()
