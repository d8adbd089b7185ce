"""HTTP intake: rows posted to ``POST /v1/intake/{name}``, landed exactly once.

The server answers a request only after its rows are durable in the source's intake
buffer (an SQLite file under ``.gristmill/intake``, one transaction per request, keyed by
its ``Idempotency-Key``: a retried request is stored once). An extraction lands the
buffered requests past the last one the table holds through the contract, with that
request's number as the Delta app transaction, and only then lets the buffer forget
their bodies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gristmill.definitions.contracts import RowCheck, RowCount
from gristmill.definitions.objects import _caller_location, check_name, make_contract
from gristmill.definitions.sources.base import Source, check_pii
from gristmill.definitions.sources.stream import _keys, _whole
from gristmill.errors import DefinitionError

METADATA = {"_received_at": "TIMESTAMPTZ", "_request": "VARCHAR"}
"""Columns an intake source fills from each request when ``columns=`` declares them: when
the server stored it, and its Idempotency-Key (or its number when it had none)."""
MAX_ROWS = 100_000_000


@dataclass(frozen=True)
class IntakeSource(Source):
    """Rows posted over HTTP, buffered durably, landed in micro-batches."""

    primary_key: tuple[str, ...] = ()
    batch_rows: int = 100_000
    max_buffer_rows: int = 1_000_000
    """Rows waiting in the buffer beyond which the server answers 429 (try later)."""

    @property
    def source_kind(self) -> str:
        return "intake"

    @property
    def app_id(self) -> str:
        return f"gristmill.intake.{self.name}"


def intake_source(
    name: str,
    *,
    columns: Mapping[str, str],
    primary_key: str | Sequence[str] | None = None,
    batch_rows: int = 100_000,
    max_buffer_rows: int = 1_000_000,
    checks: Sequence[RowCheck | tuple[RowCheck, ...]] = (),
    row_count: RowCount | None = None,
    max_quarantine_share: float = 1.0,
    pii: Mapping[str, str] | None = None,
    description: str = "",
) -> IntakeSource:
    """Declare rows that clients post to ``POST /v1/intake/NAME`` (``gristmill serve``).

    Args:
        columns: the fields to keep and their types; ``_received_at`` and ``_request``
            take the request's arrival time and Idempotency-Key.
        primary_key: upsert by these columns (the newest row wins) instead of appending.
        batch_rows: the most rows one extraction lands.
        max_buffer_rows: rows waiting to be landed beyond which posts get 429.
        max_quarantine_share: 1.0 by default: bad rows are quarantined, never block.
        pii: personal-data fields and their kind, stored as keyed pseudonyms.
    """
    location = _caller_location()
    check_name(name, location)
    if not columns or not isinstance(columns, Mapping):
        raise DefinitionError(
            f"intake source {name!r}: columns= is needed (JSON carries no types)",
            location=location,
            hint="e.g. columns={'user_id': 'BIGINT', 'event': 'VARCHAR', 'at': 'TIMESTAMP'}",
        )
    for column, kind in METADATA.items():
        declared = columns.get(column)
        if declared is not None and declared.strip().upper() != kind:
            raise DefinitionError(
                f"intake source {name!r}: {column!r} holds the request's metadata, of type "
                f"{kind}, not {declared}",
                location=location,
            )
    _whole(name, "batch_rows", batch_rows, MAX_ROWS, location)
    _whole(name, "max_buffer_rows", max_buffer_rows, MAX_ROWS, location)
    return IntakeSource(
        name=name,
        location=location,
        description=description,
        contract=make_contract(columns, checks, row_count, max_quarantine_share, location),
        primary_key=_keys(name, primary_key, columns, location),
        batch_rows=batch_rows,
        max_buffer_rows=max_buffer_rows,
        pii=check_pii(name, pii, columns, location),
    )
