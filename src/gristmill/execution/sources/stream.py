"""Stream sources: NATS JetStream, exactly once.

The lake keeps how far a stream source got: each commit carries the Delta app transaction
``gristmill.stream.NAME`` whose version is the last stream sequence it holds. An
extraction reads that number first, makes sure the durable consumer stands right behind
it (a consumer that delivered more — a process that died before its commit — or that
lost its acknowledgement — one that died after — is created again at the next sequence),
fetches a micro-batch, lands it through the contract in one commit and acknowledges it
(all at once: the consumer acknowledges everything up to a sequence) only then.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from gristmill import failpoints
from gristmill.definitions.contracts import ORDER_COLUMN
from gristmill.definitions.sources.base import Source
from gristmill.definitions.sources.database import expand, placeholders
from gristmill.definitions.sources.stream import StreamSource
from gristmill.errors import (
    DefinitionError,
    GristmillError,
    RunInProgressError,
    SourceReadError,
    SourceUnavailableError,
)
from gristmill.execution.checks import ERROR_COLUMN, FILE_COLUMN
from gristmill.execution.sql import q
from gristmill.planning.planner import SourceOffer, WriteMode

if TYPE_CHECKING:
    import pyarrow as pa

    from gristmill.definitions.sources.intake import IntakeSource
    from gristmill.execution.steps import StepContext
    from gristmill.execution.writer import WriteRequest
    from gristmill.storage.catalog import Materialization

T = TypeVar("T")
STATE_KEY = "source"
RAW = "__gm_messages"
CONNECT_TIMEOUT_S = 5
FETCH_MAX = 10_000
"""Messages asked for in one pull request."""
ACK_WAIT_S = 300
"""How long the server waits for an acknowledgement before it offers a message again
(an extraction re-creates a consumer it finds with messages in flight anyway)."""


@dataclass(frozen=True)
class State:
    """How far a stream source got: the last stream sequence committed, and how many
    messages the last extraction landed."""

    sequence: int
    messages: int = 0
    first: int | None = None
    published: str | None = None
    """When the server stored the last message landed (ISO, UTC)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "messages": self.messages,
            "first": self.first,
            "published": self.published,
        }

    @classmethod
    def of(cls, m: Materialization | None) -> State | None:
        data = (m.stats or {}).get(STATE_KEY) if m is not None else None
        if not data or "sequence" not in data:
            return None
        return cls(
            int(data["sequence"]),
            int(data.get("messages") or 0),
            data.get("first"),
            data.get("published"),
        )


# ---- discover -------------------------------------------------------------------------


def discover(source: StreamSource, last: Materialization | None) -> SourceOffer:
    """Whether the stream holds messages past the last committed sequence."""
    state = State.of(last)
    if state is None:
        return SourceOffer(news="never read: reading from the stream's first message")
    return _run(source, _pending(source, state.sequence))


async def _pending(source: StreamSource, after: int) -> SourceOffer:
    async with _Connection(source) as connection:
        stream = await connection.stream_info()
        consumer = await connection.consumer_info()
        if consumer is not None and _in_step(consumer, source, after):
            waiting = int(consumer.num_pending or 0)
            if waiting:
                return SourceOffer(news=f"{waiting:,} message(s) past sequence {after:,}")
            return SourceOffer(unchanged=f"no messages past sequence {after:,}")
        newest = int(stream.state.last_seq or 0)
        if newest > after:
            return SourceOffer(news=f"messages past sequence {after:,} (up to {newest:,})")
        return SourceOffer(unchanged=f"no messages past sequence {after:,}")


# ---- extract --------------------------------------------------------------------------


def extract(ctx: StepContext, source: StreamSource) -> Materialization:
    """Land the next micro-batch: from the stream's start on a first run or a full
    refresh, else past the sequence the lake holds."""
    seen = ctx.lake.transaction_version(source.name, source.app_id)
    appending = ctx.planned.mode is not WriteMode.OVERWRITE and ctx.previous is not None
    after = (seen or 0) if appending else 0

    def commit(batch: Batch) -> Materialization:
        return _commit(ctx, source, batch, appending, seen)

    return _run(source, _extract(source, after, commit))


@dataclass(frozen=True)
class Batch:
    rows: pa.Table
    """One row per message: sequence, subject, published time, payload text."""
    after: int
    last: int
    first: int | None
    published: str | None


async def _extract(
    source: StreamSource, after: int, commit: Callable[[Batch], Materialization]
) -> Materialization:
    async with _Connection(source) as connection:
        await connection.stream_info()
        subscription = await connection.consumer_after(after)
        messages = await _fetch(subscription, source)
        batch = _batch(messages, after)
        failpoints.hit("after_extract", source.name)
        landed = commit(batch)  # the commit blocks the loop: nothing else runs meanwhile
        failpoints.hit("before_ack", source.name)
        if messages:
            await connection.acknowledge(messages[-1])
        return landed


async def _fetch(subscription: Any, source: StreamSource) -> list[Any]:
    """Up to ``batch_rows`` messages; stops early when none came for ``batch_wait``."""
    import nats.errors

    wait = max(source.batch_wait.total_seconds(), 0.05)
    got: list[Any] = []
    while len(got) < source.batch_rows:
        try:
            got.extend(await subscription.fetch(min(FETCH_MAX, source.batch_rows - len(got)), wait))
        except (TimeoutError, nats.errors.TimeoutError):  # nats-py raises either
            break
    return got


def _batch(messages: list[Any], after: int) -> Batch:
    """The messages as rows (their metadata read off the reply subject, which is what
    nats-py parses more slowly per message)."""
    import pyarrow as pa

    sequences, subjects, published, payloads = [], [], [], []
    for message in messages:
        sequence, at = _metadata(message)
        sequences.append(sequence)
        subjects.append(message.subject)
        published.append(at)
        try:
            payloads.append(message.data.decode())
        except UnicodeDecodeError:
            payloads.append(None)
    rows = pa.table(
        {
            "sequence": pa.array(sequences, pa.int64()),
            "subject": pa.array(subjects, pa.string()),
            "published": pa.array(published, pa.timestamp("ns", tz="UTC")),
            "payload": pa.array(payloads, pa.string()),
        }
    )
    if not sequences:
        return Batch(rows, after, after, None, None)
    from datetime import UTC, datetime

    newest = datetime.fromtimestamp(max(published) / 1e9, UTC).isoformat()
    return Batch(rows, after, max(sequences), min(sequences), newest)


def _metadata(message: Any) -> tuple[int, int]:
    """Stream sequence and the server's timestamp (ns) from ``$JS.ACK.…`` (both forms)."""
    tokens = (message.reply or "").split(".")
    if len(tokens) == 9:  # $JS.ACK.stream.consumer.delivered.sseq.cseq.ts.pending
        return int(tokens[5]), int(tokens[7])
    if len(tokens) >= 12:  # $JS.ACK.domain.account.stream.consumer.delivered.sseq.cseq.ts...
        return int(tokens[7]), int(tokens[9])
    meta = message.metadata
    return int(meta.sequence.stream), int(meta.timestamp.timestamp() * 1e9)


def _commit(
    ctx: StepContext, source: StreamSource, batch: Batch, appending: bool, seen: int | None
) -> Materialization:
    from gristmill.execution.writer import write

    now = ctx.lake.transaction_version(source.name, source.app_id)
    if now != seen:
        raise RunInProgressError(
            f"stream source {source.name!r}: the lake moved from sequence {seen} to {now} "
            "while this extraction read: another process landed messages meanwhile",
            hint="run again: it reads past what is in the lake now",
        )
    ctx.session.register(RAW, batch.rows)
    state = State(batch.last, batch.rows.num_rows, batch.first, batch.published)
    request = landing(ctx, source, _relation(ctx, source), appending, batch.last, state.to_json())
    return write(ctx.session, ctx.lake, request)


def landing(
    ctx: StepContext,
    source: StreamSource | IntakeSource,
    relation: str,
    appending: bool,
    position: int,
    state: dict[str, Any],
) -> WriteRequest:
    """How a batch of messages (or posted rows) lands: appended (or merged by key) after
    the first batch, with ``position`` as the source's Delta app transaction and
    ``state`` in the materialization's stats."""
    from gristmill.execution.writer import WriteRequest

    template = replace(ctx.template, stats={**ctx.template.stats, STATE_KEY: state})
    mode = WriteMode.OVERWRITE
    if appending:
        mode = WriteMode.MERGE if source.primary_key else WriteMode.APPEND
    return WriteRequest(
        table=source.name,
        relation=relation,
        contract=source.contract,
        mode=mode,
        template=template,
        keep_only_declared=True,
        previous_rows=ctx.previous.rows if appending and ctx.previous else 0,
        merge_keys=source.primary_key,
        transactions={source.app_id: position},
        no_stats=tuple(c for c, _ in source.pii),
    )


def _relation(ctx: StepContext, source: StreamSource) -> str:
    metadata = {"_sequence": "sequence", "_subject": "subject", "_published_at": "published"}
    label = f"'{source.stream}:' || subject"  # a stream's name is letters, digits, - and _
    return json_relation(ctx, source, RAW, metadata, label, source.primary_key)


def json_relation(
    ctx: StepContext,
    source: Source,
    raw: str,
    metadata: Mapping[str, str],
    label: str,
    keys: tuple[str, ...],
) -> str:
    """JSON messages (``raw``: a ``sequence`` and a ``payload`` per row) as the contract's
    columns (text, typed by the contract's casts), with their sequence (the quarantine's
    row), ``label`` (its file) and why a message could not be read at all; the columns
    in ``metadata`` taken from ``raw``'s own; one row per key (the newest) when keyed."""
    fields = [c for c in source.contract.columns if c not in metadata]
    paths = ", ".join("'$." + _json_key(c) + "'" for c in fields)
    readable = "json_valid(payload) AND json_type(payload) = 'OBJECT'"
    values = [f"__v[{i}] AS {q(c)}" for i, c in enumerate(fields, start=1)]
    values += [f"{q(metadata[c])} AS {q(c)}" for c in source.contract.columns if c in metadata]
    error = (
        "CASE WHEN payload IS NULL THEN 'message: not UTF-8 text' "
        "WHEN NOT json_valid(payload) THEN 'message: not JSON' "
        "WHEN json_type(payload) <> 'OBJECT' THEN 'message: not a JSON object' END"
    )
    extracted = (
        f"CASE WHEN payload IS NOT NULL THEN CASE WHEN {readable} THEN "
        f"json_extract_string(payload, [{paths}]) END END"
        if fields
        else "NULL"
    )
    sql = (
        f"SELECT {', '.join(values)}, sequence AS {q(ORDER_COLUMN)}, "
        f"{label} AS {q(FILE_COLUMN)}, {error} AS {q(ERROR_COLUMN)} "
        f"FROM (SELECT *, {extracted} AS __v FROM {q(raw)})"
    )
    if keys:  # the newest message per key in a batch wins
        keyed = ", ".join(q(k) for k in keys)
        sql += (
            f" QUALIFY {q(ERROR_COLUMN)} IS NOT NULL OR row_number() OVER "
            f"(PARTITION BY {keyed}, {q(ERROR_COLUMN)} IS NULL ORDER BY {q(ORDER_COLUMN)} DESC) = 1"
        )
    view = raw + "_rows"
    ctx.session.define(view, sql)
    from gristmill.definitions.config import PiiSettings
    from gristmill.execution.sources.pii import pseudonymize

    return pseudonymize(ctx.session, source, view, ctx.pii or PiiSettings(), ctx.root)


def _json_key(column: str) -> str:
    """A JSON path member for ``column``, quoted (and its quotes escaped) for DuckDB."""
    return '"' + column.replace("\\", "\\\\").replace('"', '\\"').replace("'", "''") + '"'


# ---- the connection -------------------------------------------------------------------


def _run(source: StreamSource, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` on an event loop of its own (a step runs in a worker thread)."""
    try:
        import nats  # noqa: F401
    except ModuleNotFoundError:
        from gristmill.errors import MissingExtraError

        raise MissingExtraError("nats-py", "streams") from None
    return asyncio.run(work)


class _Connection:
    """One NATS connection for one extraction: stream and consumer, errors without
    secrets, saying where and what to do."""

    def __init__(self, source: StreamSource, environ: Mapping[str, str] | None = None) -> None:
        self.source = source
        env = os.environ if environ is None else environ
        missing = [v for v in placeholders(source.url) if v not in env]
        if missing:
            named = ", ".join("${" + v + "}" for v in missing)
            raise DefinitionError(
                f"stream source {source.name!r}: its URL names {named}, which the "
                "environment does not set",
                location=source.location,
                hint=f"export {missing[0]}=… where gristmill runs (the value is never stored)",
            )
        self.secrets = [env[v] for v in placeholders(source.url)]
        self.url = expand(source.url, env)
        parts = urlsplit(source.url)
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 4222}"
        self.errors: list[str] = []
        self.client: Any = None
        self.js: Any = None

    async def __aenter__(self) -> _Connection:
        import nats

        async def remember(exc: Exception) -> None:
            self.errors.append(str(exc) or type(exc).__name__)

        try:
            self.client = await nats.connect(
                self.url,
                connect_timeout=CONNECT_TIMEOUT_S,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                error_cb=remember,
                name=f"gristmill source {self.source.name}",
            )
        except Exception as exc:  # noqa: BLE001 - nats-py: NoServersError, auth errors, …
            raise self.failure(exc) from None
        self.js = self.client.jetstream(timeout=CONNECT_TIMEOUT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.client.close()
        except Exception:  # noqa: BLE001 - closing after a failure: nothing more to say
            pass

    async def stream_info(self) -> Any:
        import nats.errors
        import nats.js.errors

        try:
            return await self.js.stream_info(self.source.stream)
        except nats.js.errors.NotFoundError:
            raise SourceReadError(
                f"stream source {self.source.name!r}: NATS at {self.where} has no stream "
                f"{self.source.stream!r}",
                location=self.source.location,
                hint=f"create it (nats stream add {self.source.stream} --subjects "
                f"'{self.source.subject or '…'}') or fix stream=",
            ) from None
        except nats.errors.NoRespondersError:
            raise SourceReadError(
                f"stream source {self.source.name!r}: NATS at {self.where} has no JetStream",
                location=self.source.location,
                hint="start nats-server with JetStream (-js)",
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise self.failure(exc) from None

    async def consumer_info(self) -> Any:
        import nats.js.errors

        try:
            return await self.js.consumer_info(self.source.stream, self.source.consumer)
        except nats.js.errors.NotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise self.failure(exc) from None

    async def consumer_after(self, after: int) -> Any:
        """A pull subscription on the durable consumer, standing right after sequence
        ``after`` (re-created if it stands elsewhere or has messages in flight)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        try:
            found = await self.consumer_info()
            if found is not None and not _in_step(found, self.source, after):
                await self.js.delete_consumer(self.source.stream, self.source.consumer)
                found = None
            if found is None:
                config = ConsumerConfig(
                    durable_name=self.source.consumer,
                    description=f"gristmill source {self.source.name}",
                    ack_policy=AckPolicy.ALL,
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=after + 1,
                    filter_subject=self.source.subject,
                    ack_wait=ACK_WAIT_S,
                    max_ack_pending=-1,
                )
                await self.js.add_consumer(self.source.stream, config)
            return await self.js.pull_subscribe_bind(
                self.source.consumer, stream=self.source.stream
            )
        except GristmillError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self.failure(exc) from None

    async def acknowledge(self, last: Any) -> None:
        """Acknowledge everything up to ``last``; the commit is already durable, so a
        lost acknowledgement only means the next extraction re-creates the consumer."""
        try:
            await last.ack()
            await self.client.flush(timeout=CONNECT_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - see above
            pass

    def failure(self, exc: BaseException) -> GristmillError:
        text = self._clean("; ".join([str(exc) or type(exc).__name__, *self.errors[-1:]]))
        name = self.source.name
        if re.search(r"authori[sz]ation|authentication|permissions violation", text, re.I):
            return SourceReadError(
                f"stream source {name!r}: NATS at {self.where} refused the connection: "
                f"{text[:300]}",
                location=self.source.location,
                hint="check the user and password (or token) in the environment variables "
                "the URL names",
            )
        if re.search(r"no servers|refused|timeout|timed out|unreachable|reset|closed", text, re.I):
            return SourceUnavailableError(
                f"stream source {name!r}: cannot reach NATS at {self.where}: {text[:300]}",
                location=self.source.location,
                hint="is nats-server running (with -js) and reachable from here? the "
                "scheduler tries again by its retry policy",
            )
        return SourceReadError(
            f"stream source {name!r} (NATS at {self.where}): {text[:300]}",
            location=self.source.location,
            hint="check stream=, subject= and the user's permissions",
        )

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        from gristmill.definitions.urls import redact_credentials

        return redact_credentials(text)


def _in_step(consumer: Any, source: StreamSource, after: int) -> bool:
    """Whether the consumer stands right after ``after`` with nothing in flight and reads
    what the source says (subject, acknowledgement of all up to one)."""
    from nats.js.api import AckPolicy

    config = consumer.config
    return (
        int(consumer.num_ack_pending or 0) == 0
        and int(consumer.delivered.stream_seq or 0) == after
        and (config.filter_subject or None) == source.subject
        and config.ack_policy == AckPolicy.ALL
    )
