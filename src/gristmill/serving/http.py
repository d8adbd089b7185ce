"""HTTP plumbing of the serving app: requests, replies, and the one error mapping.

The endpoints are plain ASGI callables over these helpers (no framework objects on the
hot path). ``reply_for`` is the only place where a ``GristmillError`` becomes a status,
headers and a body: the ``/v1`` routes answer ``{"error", "message", "hint", "status"}``,
the Open Inference Protocol routes ``{"error": <message>, ...}`` as that protocol's
clients read it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gristmill.access import Principal
from gristmill.errors import (
    BadRequest,
    CatalogError,
    EntityNotFound,
    Forbidden,
    GristmillError,
    MethodNotAllowed,
    NoSuchRoute,
    OnlineStoreError,
    PayloadTooLarge,
    PredictionLogError,
    ServingInputError,
    TooManyRequests,
    Unauthorized,
    UnknownModelError,
    UnknownServiceError,
    UnsupportedMediaType,
)

EXACT_FLOAT_INT = 2**53
"""Beyond this a float is not an exact integer: JSON integers past 64 bits arrive as floats."""
INEXACT = " (it arrived as a float beyond 2**53, which is not exact: send it as a string)"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

STATUS: dict[type[GristmillError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    EntityNotFound: 404,
    UnknownServiceError: 404,
    UnknownModelError: 404,
    NoSuchRoute: 404,
    MethodNotAllowed: 405,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    TooManyRequests: 429,
    ServingInputError: 422,
    OnlineStoreError: 503,
    CatalogError: 503,
    PredictionLogError: 503,
}
CATEGORY_STATUS = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unavailable": 503,
    "failed": 422,
}
"""Errors without a status of their own answer by their category; ``failed`` (the work
itself failed: a run, a training) is 422, never a 500, which is kept for bugs."""
REALM = b'Bearer realm="gristmill"'
JSON = b"application/json"


class ClientGone(Exception):
    """The client closed the connection before its request was read; nothing to answer."""


def key_principal(header: str | None, authenticate: Callable[[str], Principal | None]) -> Principal:
    """Who an ``Authorization: Bearer <key>`` header names: the one reading of a key, for
    the serving app and the API/UI app alike (``authenticate``: the workspace's keys)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "missing API key", hint="send `Authorization: Bearer <key>` (gristmill tokens create)"
        )
    principal = authenticate(token.strip())
    if principal is None:
        raise Unauthorized(
            "unknown or revoked API key",
            token_given=True,
            hint="ask an admin for a key: gristmill tokens create --role ...",
        )
    return principal


def status_of(exc: GristmillError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return CATEGORY_STATUS.get(exc.category, 422)


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: Headers = field(default_factory=list)


def json_reply(data: Any, status: int = 200, headers: Headers | None = None) -> Reply:
    return Reply(status, orjson.dumps(data), JSON, headers or [])


def reply_for(exc: GristmillError, *, oip: bool = False) -> Reply:
    """The one translation of an error into an HTTP answer."""
    status = status_of(exc)
    headers: Headers = []
    if isinstance(exc, Unauthorized):
        invalid = b', error="invalid_token"' if exc.token_given else b""
        headers.append((b"www-authenticate", REALM + invalid))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", ", ".join(exc.allowed).encode()))
    if isinstance(exc, TooManyRequests):
        headers.append((b"retry-after", str(exc.retry_after_s).encode()))
    if oip:  # the protocol's error object: {"error": <message>}
        body: dict[str, Any] = {"error": exc.message}
        body.update({"type": type(exc).__name__, "hint": exc.hint or None, "status": status})
    else:
        body = {**exc.to_dict(), "status": status}
    return json_reply(body, status, headers)


def internal_error_body(incident: str) -> dict[str, Any]:
    """What a bug answers, in every app: only the incident id to find it in the log."""
    message = f"internal error {incident}: the server's log has the details"
    return {"error": "InternalError", "message": message, "status": 500}


def internal_error(incident: str) -> Reply:
    return json_reply(internal_error_body(incident), 500)


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class Request:
    """What an endpoint reads of a request: headers, path parameters, the body."""

    __slots__ = ("scope", "receive", "params", "role", "max_body")

    def __init__(self, scope: Scope, receive: Receive, max_body: int) -> None:
        self.scope = scope
        self.receive = receive
        self.params: Mapping[str, str] = scope.get("path_params") or {}
        self.role = "anonymous"
        self.max_body = max_body

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    async def body(self) -> bytes:
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise PayloadTooLarge(
                f"the body is {int(declared)} bytes; the limit is {self.max_body}",
                hint="send a smaller body: fewer instances or rows per request",
            )
        chunks = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(
                    f"the body is over the limit of {self.max_body} bytes",
                    hint="send a smaller body: fewer instances or rows per request",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def check_json_type(self, *also: bytes) -> bytes:
        """The media type, refused unless JSON (or one of ``also``); absent counts as JSON."""
        raw = self.header(b"content-type")
        if raw is None:
            return JSON
        media = raw.split(b";", 1)[0].strip().lower()
        if media == JSON or media.endswith(b"+json") or media in also:
            return media
        accepted = ", ".join(t.decode() for t in (JSON, *also))
        raise UnsupportedMediaType(
            f"the body is sent as {media.decode(errors='replace')!r}; this endpoint reads "
            f"{accepted}",
            hint="send the header `Content-Type: application/json` (curl: -H 'Content-Type: "
            "application/json')",
        )

    async def json(self) -> Any:
        self.check_json_type()
        return parse_json(await self.body())


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def unknown_fields(given: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Refuse fields an endpoint does not read, naming the first one (422)."""
    for name in given:
        if name not in allowed:
            raise ServingInputError(
                f"{where}{name} is not a field here",
                hint=f"fields: {', '.join(allowed)}",
            )
