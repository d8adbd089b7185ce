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
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

OVER_LIMIT_GRACE_S = 1.0


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
    """The connection's transport, sending the writes of one event-loop step at once.

    uvicorn writes a response's head and body separately; each write is a ``send(2)``
    that on loopback also wakes the reader. Joined, a small response costs one.
    """

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._over_limit = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalesced(transport, self.loop)  # type: ignore[assignment]
        if len(self.connections) > self.max_connections:
            self._over_limit = True
            self.app = _overloaded  # answers the request, whatever it is
            self._arm(OVER_LIMIT_GRACE_S)
            return
        self._arm(self.request_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.request_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.cycle is not None and self.cycle.response_started
        if not started:
            if self._over_limit:
                self.transport.write(_TOO_MANY)
            else:
                message = f"the request did not arrive whole within {self.request_timeout:g} s"
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
