"""What every kind of source shares: a raw table of its own name, a contract, state.

A source is the only step that reads outside the lake. Each kind says what it reads and
keeps a state of how far it got (the files it ingested, a watermark); the state rides in
the Delta commit of the rows it describes (the materialization record), so a crash between
the commit and the catalog never reads anything twice. ``discover`` (in
``planning.discovery``) looks at the outside world before planning, so the planner itself
stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gristmill.definitions.contracts import Contract
from gristmill.definitions.objects import Definition, StepKind
from gristmill.errors import DefinitionError, Location

PII_TAGS = ("email", "phone", "name", "id", "free_text")
"""Kinds of personal data a column can hold; each is normalized before it is hashed
(an e-mail's case and spaces, a phone number's punctuation), so pseudonyms join."""
TEXT_TYPES = frozenset({"VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR"})


@dataclass(frozen=True)
class Source(Definition):
    """External data ingested into a raw table of the same name, through its contract."""

    contract: Contract
    pii: tuple[tuple[str, str], ...] = field(default=(), kw_only=True)
    """Personal-data columns and their kind: stored as keyed HMAC-SHA256 pseudonyms."""

    @property
    def kind(self) -> StepKind:
        return StepKind.INGEST

    @property
    def source_kind(self) -> str:
        """``files``, ``database``, …: shown by ``gristmill sources``."""
        raise NotImplementedError


def check_pii(
    name: str, pii: Mapping[str, str] | None, declared: Mapping[str, str], location: Location
) -> tuple[tuple[str, str], ...]:
    """``pii={"email": "email", ...}`` as sorted pairs; a column declared with a type must
    be text (its pseudonym is)."""
    if not pii:
        return ()
    if not isinstance(pii, Mapping):
        raise DefinitionError(
            f"source {name!r}: pii= maps columns to kinds, not {type(pii).__name__}",
            location=location,
            hint='e.g. pii={"email": "email", "phone": "phone"}',
        )
    for column, tag in pii.items():
        if tag not in PII_TAGS:
            raise DefinitionError(
                f"source {name!r}: unknown kind of personal data {tag!r} for {column!r}",
                location=location,
                hint=f"use one of {', '.join(PII_TAGS)}",
            )
        kind = declared.get(column)
        if declared and kind is None:
            raise DefinitionError(
                f"source {name!r}: pii= names {column!r}, which columns= does not declare",
                location=location,
                hint=f"declare it: columns={{{column!r}: 'VARCHAR', ...}}",
            )
        if kind is not None and kind.strip().upper().split("(")[0] not in TEXT_TYPES:
            raise DefinitionError(
                f"source {name!r}: {column!r} is personal data, stored as its pseudonym "
                f"(text), but is declared {kind}",
                location=location,
                hint=f"declare it VARCHAR: columns={{{column!r}: 'VARCHAR', ...}}",
            )
    return tuple(sorted(pii.items()))
