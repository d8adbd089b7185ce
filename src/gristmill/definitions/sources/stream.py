"""Streams: a NATS JetStream stream read by a durable pull consumer, in micro-batches.

Each extraction reads the messages past the last committed stream sequence (up to
``batch_rows``, waiting at most ``batch_wait`` for more), checks them against the contract
(a message that is not a JSON object is quarantined with its sequence number and never
blocks the stream), commits them with the last sequence as the Delta app transaction,
and only then acknowledges them. The lake, not the broker, is the truth about how far the
source got: a crash between the commit and the acknowledgement reads nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from gristmill.definitions.contracts import RowCheck, RowCount
from gristmill.definitions.objects import _caller_location, check_name, make_contract
from gristmill.definitions.sources.base import Source, check_pii
from gristmill.errors import DefinitionError, Location

FORMATS = ("json",)
METADATA = {
    "_sequence": "BIGINT",
    "_subject": "VARCHAR",
    "_published_at": "TIMESTAMPTZ",
}
"""Columns a stream source fills from each message's metadata when ``columns=`` declares
them: its stream sequence, its subject and when the server stored it."""
MAX_BATCH_ROWS = 10_000_000
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_TOKEN = re.compile(r"^[^\s.*>]+$")


@dataclass(frozen=True)
class StreamSource(Source):
    """A JetStream stream (messages on ``subject``), landed exactly once."""

    url: str
    """``nats://host:4222``; a user or password as ``${VAR}`` placeholders."""
    stream: str
    subject: str | None = None
    """A filter within the stream (``events.>``); None: every message of the stream."""
    format: str = "json"
    primary_key: tuple[str, ...] = ()
    """When set, a message replaces the row with its key (the latest wins); else appended."""
    batch_rows: int = 100_000
    batch_wait: timedelta = timedelta(seconds=1)
    consumer: str = ""
    """The durable consumer's name (``gristmill_<name>`` unless given)."""

    @property
    def source_kind(self) -> str:
        return "stream"

    @property
    def app_id(self) -> str:
        """The Delta app transaction whose version is the last committed sequence."""
        return f"gristmill.stream.{self.name}"


def stream_source(
    name: str,
    *,
    url: str,
    stream: str,
    subject: str | None = None,
    format: str = "json",
    columns: Mapping[str, str],
    primary_key: str | Sequence[str] | None = None,
    batch_rows: int = 100_000,
    batch_wait: str | timedelta = "1s",
    consumer: str | None = None,
    checks: Sequence[RowCheck | tuple[RowCheck, ...]] = (),
    row_count: RowCount | None = None,
    max_quarantine_share: float = 1.0,
    pii: Mapping[str, str] | None = None,
    description: str = "",
) -> StreamSource:
    """Declare a NATS JetStream stream to land in table ``name``, exactly once.

    Args:
        url: ``nats://host:4222``; credentials as ``nats://user:${NATS_PASSWORD}@host``.
        stream: the JetStream stream's name (``EVENTS``); it must exist.
        subject: a filter within it (``events.>``); all of its messages when not given.
        format: ``json``: each message is one JSON object.
        columns: the fields to keep and their types (JSON carries none); ``_sequence``,
            ``_subject`` and ``_published_at`` take the message's metadata.
        primary_key: upsert by these columns (the newest message wins) instead of
            appending every message.
        batch_rows: the most messages one extraction commits.
        batch_wait: how long an extraction waits for more messages before it commits.
        max_quarantine_share: 1.0 by default, so a burst of bad messages is quarantined
            and never stops the stream; lower it to refuse a batch instead.
        pii: personal-data fields and their kind, stored as keyed HMAC-SHA256 pseudonyms.
    """
    location = _caller_location()
    check_name(name, location)
    _check_url(name, url, location)
    if not isinstance(stream, str) or not _NAME.match(stream):
        raise DefinitionError(
            f"stream source {name!r}: {stream!r} is not a JetStream stream name",
            location=location,
            hint='letters, digits, "-" and "_", e.g. stream="EVENTS"',
        )
    if subject is not None and not _is_subject_filter(subject):
        raise DefinitionError(
            f"stream source {name!r}: {subject!r} is not a NATS subject filter",
            location=location,
            hint='tokens separated by ".", "*" for one token, ">" at the end for the rest: '
            '"events.>"',
        )
    if format not in FORMATS:
        raise DefinitionError(
            f"stream source {name!r}: format={format!r} is not supported",
            location=location,
            hint="use format='json' (one JSON object per message)",
        )
    if not columns or not isinstance(columns, Mapping):
        raise DefinitionError(
            f"stream source {name!r}: columns= is needed (a JSON message carries no types)",
            location=location,
            hint="e.g. columns={'user_id': 'BIGINT', 'amount': 'DOUBLE', 'at': 'TIMESTAMP'}",
        )
    keys = _keys(name, primary_key, columns, location)
    _whole(name, "batch_rows", batch_rows, MAX_BATCH_ROWS, location)
    from gristmill.definitions.models import parse_duration

    wait = parse_duration(batch_wait, location, "batch_wait")
    if not timedelta(0) <= wait <= timedelta(minutes=10):
        raise DefinitionError(
            f"stream source {name!r}: batch_wait must be between 0s and 10m",
            location=location,
        )
    durable = consumer if consumer is not None else f"gristmill_{name}"
    if not isinstance(durable, str) or not _NAME.match(durable):
        raise DefinitionError(
            f"stream source {name!r}: {durable!r} is not a consumer name",
            location=location,
            hint='letters, digits, "-" and "_"',
        )
    contract = make_contract(columns, checks, row_count, max_quarantine_share, location)
    for column, kind in METADATA.items():
        declared = columns.get(column)
        if declared is not None and declared.strip().upper() != kind:
            raise DefinitionError(
                f"stream source {name!r}: {column!r} holds the message's metadata, of type "
                f"{kind}, not {declared}",
                location=location,
                hint=f"declare {column!r}: {kind!r}, or name the field otherwise",
            )
    return StreamSource(
        name=name,
        location=location,
        description=description,
        contract=contract,
        url=url,
        stream=stream,
        subject=subject,
        format=format,
        primary_key=keys,
        batch_rows=batch_rows,
        batch_wait=wait,
        consumer=durable,
        pii=check_pii(name, pii, columns, location),
    )


def _check_url(name: str, url: object, location: Location) -> None:
    from urllib.parse import urlsplit

    from gristmill.definitions.sources.database import _PLACEHOLDER

    if not isinstance(url, str):
        raise DefinitionError(
            f"stream source {name!r}: url= is text, not {type(url).__name__}", location=location
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise DefinitionError(
            f"stream source {name!r}: the URL {url!r} does not parse",
            location=location,
            hint="e.g. nats://127.0.0.1:4222",
        ) from None
    if parts.scheme not in ("nats", "tls"):
        raise DefinitionError(
            f"stream source {name!r}: unsupported stream {parts.scheme or '(no scheme)'!r}",
            location=location,
            hint="use nats://host:4222 (NATS JetStream) or tls://host:4222",
        )
    from urllib.parse import parse_qsl

    from gristmill.definitions.sources.database import _SECRET_KEYS

    secrets = [k for k, v in parse_qsl(parts.query) if k.lower() in {*_SECRET_KEYS, "token"} and v]
    if secrets:
        raise DefinitionError(
            f"stream source {name!r}: the URL holds a {secrets[0]}; a project file must not",
            location=location,
            hint="put it in an environment variable and name it: nats://app:${NATS_PASSWORD}@host",
        )
    userinfo = parts.netloc.rpartition("@")[0]
    secret = userinfo.partition(":")[2] if ":" in userinfo else userinfo
    if secret and not _PLACEHOLDER.fullmatch(secret) and ":" in userinfo:
        raise DefinitionError(
            f"stream source {name!r}: the URL holds a password; a project file must not",
            location=location,
            hint="put it in an environment variable and name it: nats://app:${NATS_PASSWORD}@host",
        )
    if userinfo and ":" not in userinfo and not _PLACEHOLDER.fullmatch(userinfo):
        raise DefinitionError(
            f"stream source {name!r}: the URL holds a token; a project file must not",
            location=location,
            hint="put it in an environment variable and name it: nats://${NATS_TOKEN}@host",
        )


def _is_subject_filter(subject: object) -> bool:
    """Tokens separated by dots; ``*`` stands for one token, ``>`` (last) for the rest."""
    if not isinstance(subject, str):
        return False
    tokens = subject.split(".")
    return all(
        t == "*" or _TOKEN.match(t) or (t == ">" and i == len(tokens) - 1)
        for i, t in enumerate(tokens)
    )


def _keys(
    name: str, value: str | Sequence[str] | None, columns: Mapping[str, str], location: Location
) -> tuple[str, ...]:
    if value is None:
        return ()
    keys = (value,) if isinstance(value, str) else tuple(value)
    missing = [k for k in keys if not isinstance(k, str) or k not in columns]
    if missing or not keys:
        raise DefinitionError(
            f"stream source {name!r}: primary_key= names {missing[0] if missing else value!r}, "
            "which columns= does not declare",
            location=location,
            hint="the key must be one of the declared columns",
        )
    return keys


def _whole(name: str, what: str, value: object, most: int, location: Location) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise DefinitionError(
            f"stream source {name!r}: {what} must be a whole number from 1 to {most:,}, "
            f"not {value!r}",
            location=location,
        )
