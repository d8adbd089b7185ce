"""Intake sources: the requests buffered by the server, landed exactly once.

An extraction reads the buffered requests past the last request number the table holds
(the Delta app transaction ``gristmill.intake.NAME``), lands their rows through the
contract in one commit carrying the last number, and only then clears their bodies from
the buffer; a crash in between reads them again and skips what the lake holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gristmill import failpoints
from gristmill.definitions.sources.intake import IntakeSource
from gristmill.errors import RunInProgressError
from gristmill.planning.planner import SourceOffer, WriteMode
from gristmill.storage.intake import Buffered, IntakeBuffer, buffer_path

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from gristmill.execution.steps import StepContext
    from gristmill.storage.catalog import Materialization

STATE_KEY = "source"
RAW = "__gm_posted"
ROW_BITS = 20
"""A row's order is its request's number shifted by this, plus its index in the request."""


@dataclass(frozen=True)
class State:
    request: int
    """The last request number landed."""
    rows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request, "rows": self.rows}

    @classmethod
    def of(cls, m: Materialization | None) -> State | None:
        data = (m.stats or {}).get(STATE_KEY) if m is not None else None
        if not data or "request" not in data:
            return None
        return cls(int(data["request"]), int(data.get("rows") or 0))


def open_buffer(state_dir: Path, source: IntakeSource) -> IntakeBuffer:
    return IntakeBuffer(buffer_path(state_dir, source.name))


def discover(source: IntakeSource, last: Materialization | None, state_dir: Path) -> SourceOffer:
    landed = State.of(last)
    after = landed.request if landed else 0
    buffer = open_buffer(state_dir, source)
    try:
        requests, rows = buffer.waiting(after)
    finally:
        buffer.close()
    if requests:
        return SourceOffer(news=f"{rows:,} row(s) in {requests:,} request(s) posted")
    if landed is None:
        return SourceOffer(news="never landed")
    return SourceOffer(unchanged=f"no requests past number {after:,}")


def extract(ctx: StepContext, source: IntakeSource, state_dir: Path) -> Materialization:
    from gristmill.execution.sources.stream import json_relation, landing
    from gristmill.execution.writer import write

    held = ctx.lake.transaction_version(source.name, source.app_id)
    appending = ctx.planned.mode is not WriteMode.OVERWRITE and ctx.previous is not None
    after = (held or 0) if appending else 0
    buffer = open_buffer(state_dir, source)
    try:
        requests = buffer.read(after, source.batch_rows)
        rows = _rows(requests)
        last = requests[-1].sequence if requests else after
        ctx.session.register(RAW, rows)
        metadata = {"_received_at": "received", "_request": "request"}
        relation = json_relation(
            ctx,
            source,
            RAW,
            metadata,
            f"'request ' || request || ', row ' || ((sequence & {MAX_ROWS_PER_REQUEST}) + 1)",
            source.primary_key,
        )
        failpoints.hit("after_extract", source.name)
        landed = State(last, rows.num_rows)
        request = landing(ctx, source, relation, appending, last, landed.to_json())
        if ctx.lake.transaction_version(source.name, source.app_id) != held:
            raise RunInProgressError(
                f"intake source {source.name!r}: another process landed requests meanwhile",
                hint="run again: it reads past what is in the lake now",
            )
        materialization = write(ctx.session, ctx.lake, request)
        failpoints.hit("before_ack", source.name)
        buffer.landed(last)
    finally:
        buffer.close()
    return materialization


def _rows(requests: list[Buffered]) -> pa.Table:
    """One row per posted object: its order, its request (key or number), when it came,
    and its JSON text (a request was checked to be JSON objects when it was posted)."""
    import orjson
    import pyarrow as pa

    order, request, received, payload = [], [], [], []
    for posted in requests:
        for i, item in enumerate(parse_body(posted.body)):
            order.append((posted.sequence << ROW_BITS) + i)
            request.append(posted.key or str(posted.sequence))
            received.append(posted.received_us)
            payload.append(orjson.dumps(item).decode())
    return pa.table(
        {
            "sequence": pa.array(order, pa.int64()),
            "request": pa.array(request, pa.string()),
            "received": pa.array(received, pa.timestamp("us", tz="UTC")),
            "payload": pa.array(payload, pa.string()),
        }
    )


MAX_ROWS_PER_REQUEST = (1 << ROW_BITS) - 1


class BodyError(ValueError):
    """A posted body that is not JSON objects: where and what."""


def parse_body(body: bytes) -> list[Any]:
    """A JSON array of objects, or JSON lines (one object per line)."""
    import orjson

    text = body.strip()
    if not text:
        raise BodyError("the body is empty: send a JSON array of objects or JSON lines")
    if text.startswith(b"["):
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BodyError(f"the body is not valid JSON: {exc}") from None
        where = "item"
    else:
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise BodyError(f"line {number} is not valid JSON: {exc}") from None
        where = "line"
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise BodyError(f"{where} {number} is not a JSON object")
    if len(items) > MAX_ROWS_PER_REQUEST:
        raise BodyError(f"{len(items):,} rows in one request; at most {MAX_ROWS_PER_REQUEST:,}")
    return list(items)
