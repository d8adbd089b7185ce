"""``POST /v1/intake/{source}``: rows for an intake source, acknowledged once durable.

The body is a JSON array of objects or JSON lines (``application/x-ndjson``); it is
checked to be JSON objects (a bad body is refused whole: 400, saying where), stored in
the source's buffer in one SQLite transaction, and only then answered 202. With an
``Idempotency-Key`` header a retried request is answered as the first one was and
stored once; the same key with another body is refused (409). When the buffer holds
``max_buffer_rows`` rows not landed yet, the answer is 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path

from gristmill.definitions.sources.intake import IntakeSource
from gristmill.errors import BadRequest, IdempotencyConflict, NoSuchRoute, TooManyRequests
from gristmill.serving.http import Reply, Request, json_reply
from gristmill.storage.intake import BufferFull, IntakeBuffer, KeyReused, buffer_path

ROUTE = "/v1/intake/{name}"
RETRY_AFTER_S = 5
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
LINES = (b"application/x-ndjson", b"application/jsonl", b"application/json-lines")


class Intake:
    """The intake sources a server takes rows for, each with its buffer."""

    def __init__(self, sources: Mapping[str, IntakeSource], state: Path) -> None:
        self.sources = dict(sources)
        self.buffers = {name: IntakeBuffer(buffer_path(state, name)) for name in self.sources}

    def close(self) -> None:
        for buffer in self.buffers.values():
            buffer.close()

    async def post(self, request: Request) -> Reply:
        from gristmill.execution.sources.intake import BodyError, parse_body

        name = request.params["name"]
        source = self.sources.get(name)
        if source is None:
            known = ", ".join(sorted(self.sources)) or "(none: declare gm.intake_source)"
            raise NoSuchRoute(f"no intake source {name!r}", hint=f"intake sources: {known}")
        request.check_json_type(*LINES)
        key = _key(request)
        body = await request.body()
        try:
            rows = len(await asyncio.to_thread(parse_body, body))
        except BodyError as exc:
            raise BadRequest(
                str(exc), hint="send a JSON array of objects, or one JSON object per line"
            ) from None
        try:
            accepted = await asyncio.to_thread(
                self.buffers[name].add, key, body, rows, source.max_buffer_rows
            )
        except KeyReused:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was sent before with a different body",
                hint="use a new key for new rows; resend the same body to retry",
            ) from None
        except BufferFull as full:
            raise TooManyRequests(
                f"intake source {name!r} holds {full.waiting:,} rows not landed yet; "
                f"{rows:,} more would pass its max_buffer_rows of {source.max_buffer_rows:,}",
                retry_after_s=RETRY_AFTER_S,
                hint="try again after Retry-After seconds; `gristmill ingest "
                f"{name} --follow` lands them",
            ) from None
        return json_reply(
            {
                "source": name,
                "request": accepted.sequence,
                "rows": accepted.rows,
                "duplicate": accepted.duplicate,
            },
            202,
        )


def _key(request: Request) -> str | None:
    raw = request.header(b"idempotency-key")
    if raw is None:
        return None
    text = raw.decode("latin-1").strip().strip('"')
    if not _KEY.match(text):
        raise BadRequest(
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
            hint="e.g. a UUID per batch of rows, the same on every retry",
        )
    return text
