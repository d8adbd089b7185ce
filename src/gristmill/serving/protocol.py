"""uvicorn's HTTP protocol with two guards: a bound on connections and a request deadline.

- A worker holds at most ``max_connections`` connections; one beyond that is answered
  503 with ``Retry-After`` (once its request line and headers arrive, or closed after a
  second if they do not) and closed.
- A request must arrive whole (headers and body) within ``request_timeout`` seconds of
  the connection opening or of its first byte: a stalled or trickling client is answered
  408 and closed, so idle sockets cannot pile up.

The limits are class attributes, set with ``configure`` in each worker before it serves
(uvicorn hands worker processes the class by name).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

OVER_LIMIT_GRACE_S = 1.0
FLUSH_BYTES = 64 << 10
REPEAT_WINDOW_S = 60.0


class RepeatFilter(logging.Filter):
    """One line per kind of client mistake a minute, not one per request.

    uvicorn logs every malformed request ("Invalid HTTP request received.") with its
    traceback: a scanner could fill the disk with the server's log. The same message is let
    through at most once per ``REPEAT_WINDOW_S``, counting the ones it held back, and
    without the traceback (the fault is the client's). Errors always pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[object, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:  # the server's own faults: every one, as is
            return True
        now = time.monotonic()
        last, held = self._seen.get(record.msg, (-REPEAT_WINDOW_S, 0))
        if now - last < REPEAT_WINDOW_S:
            self._seen[record.msg] = (last, held + 1)
            return False
        self._seen[record.msg] = (now, 0)
        record.exc_info = None
        record.exc_text = None
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it held back)"
            record.args = ()
        return True


def _raw(status: str, message: str, extra: bytes = b"") -> bytes:
    code = int(status.split()[0])
    body = orjson.dumps({"error": status.split(" ", 1)[1].replace(" ", ""), "message": message,
                         "status": code})  # fmt: skip
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    ).encode()
    return head + extra + b"\r\n" + body


class _Coalesced:
    """The connection's transport, holding a response's writes until it is complete.

    uvicorn writes a response's head and body separately; each write is a ``send(2)``
    that on loopback also wakes the reader. The protocol flushes when the response is
    complete (or the connection closes), so a small response costs one. A ``100
    Continue`` goes out at once, and a large body in pieces.
    """

    __slots__ = ("_transport", "_pending", "_size")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size > FLUSH_BYTES or data.startswith(b"HTTP/1.1 100 "):
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedProtocol(HttpToolsProtocol):
    max_connections = 1000
    request_timeout = 10.0

    @classmethod
    def configure(cls, *, max_connections: int, request_timeout: float) -> None:
        cls.max_connections = max_connections
        cls.request_timeout = request_timeout
        errors = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, RepeatFilter) for f in errors.filters):
            errors.addFilter(RepeatFilter())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None
        """When the connection began to wait for a whole request (None: it has one)."""
        self._limit = self.request_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalesced(transport)  # type: ignore[assignment]
        self._waiting_since = self.loop.time()
        if len(self.connections) > self.max_connections:
            self.app = _overloaded  # answers the request, whatever it is, and closes
            self._limit = OVER_LIMIT_GRACE_S
        self._timer = self.loop.call_later(self._limit, self._check)

    # one timer per connection, re-armed when it fires: a request costs two assignments
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._waiting_since is None:
            self._waiting_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._waiting_since = None

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        since = self._waiting_since
        left = self._limit if since is None else since + self._limit - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._check)
            return
        cycle = self.cycle  # the previous request's, if this one's headers are unfinished
        if cycle is None or cycle.response_complete or not cycle.response_started:
            if self.app is _overloaded:
                self.transport.write(_TOO_MANY)
            else:
                message = f"the request did not arrive whole within {self._limit:g} s"
                self.transport.write(_raw("408 Request Timeout", message))
        self.transport.close()


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    body = _TOO_MANY.split(b"\r\n\r\n", 1)[1]
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_TOO_MANY = _raw(
    "503 Service Unavailable",
    "the server holds as many connections as it may; retry in a second",
    b"retry-after: 1\r\n",
)
