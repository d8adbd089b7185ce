"""Personal data at ingestion: tagged columns become keyed HMAC-SHA256 pseudonyms.

The pseudonym is computed in the engine (DuckDB's sha256 over the key's inner and outer
pads, which equals Python's ``hmac``), after a normalization per kind so that the same
person's values join (``Alice@Example.com `` and ``alice@example.com``). The key's pads
live in a temporary table of the step's session, bound as parameters: the key is never
part of a SQL text, an error, the catalog or a log.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from gristmill.definitions.config import PiiSettings
from gristmill.definitions.sources import Source
from gristmill.errors import DefinitionError
from gristmill.execution.engines import Session
from gristmill.execution.sql import q

KEY_TABLE = "__gm_pii_key"
_BLOCK = 64  # SHA-256's block size in bytes
_NORMALIZE = {
    "email": "lower(trim({v}))",
    "name": "lower(trim({v}))",
    "phone": "regexp_replace({v}, '[^0-9+]', '', 'g')",
    "id": "trim({v})",
    "free_text": "{v}",
}


def load_key(settings: PiiSettings, root: Path, source: Source) -> bytes:
    """The key, from the environment or the key file; a clear error without it."""
    value = os.environ.get(settings.key_env)
    if value:
        return value.encode()
    if settings.key_file:
        path = root / settings.key_file
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise DefinitionError(
                f"source {source.name!r} has personal-data columns and the pii key file "
                f"{path} cannot be read ({exc.strerror})",
                location=source.location,
                hint=f"put the key in it, or export {settings.key_env}",
            ) from None
        if text:
            return text.encode()
    raise DefinitionError(
        f"source {source.name!r} has personal-data columns "
        f"({', '.join(c for c, _ in source.pii)}) and no pseudonym key is set",
        location=source.location,
        hint=f"export {settings.key_env}=<a long random secret> (or [pii] key_file in "
        "gristmill.toml); keep it: the same key gives the same pseudonyms",
    )


def register_key(session: Session, key: bytes) -> None:
    """The key's HMAC pads as a one-row temporary table of the session (parameters only)."""
    import pyarrow as pa

    padded = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
    inner = bytes(b ^ 0x36 for b in padded)
    outer = bytes(b ^ 0x5C for b in padded)
    session.register(KEY_TABLE, pa.table({"ipad": [inner], "opad": [outer]}))


def pseudonymized_sql(
    relation: str, columns: Sequence[str], tags: Mapping[str, str], source: Source
) -> str:
    """``SELECT * REPLACE (<pseudonym of each tagged column>) FROM relation``; a tagged
    column the relation lacks is an error naming it."""
    missing = sorted(c for c in tags if c not in columns)
    if missing:
        raise DefinitionError(
            f"source {source.name!r}: pii= names {', '.join(map(repr, missing))}, which the "
            "source does not have",
            location=source.location,
            hint="its columns: " + ", ".join(columns),
        )
    replaced = []
    for column, tag in tags.items():
        name = q(column)
        value = _NORMALIZE[tag].format(v=f"CAST(r.{name} AS VARCHAR)")
        digest = f"sha256(k.opad || unhex(sha256(k.ipad || encode({value}))))"
        replaced.append(f"CASE WHEN r.{name} IS NULL THEN NULL ELSE {digest} END AS {name}")
    return f"SELECT r.* REPLACE ({', '.join(replaced)}) FROM {q(relation)} r, {q(KEY_TABLE)} k"


def pseudonymize(
    session: Session, source: Source, relation: str, settings: PiiSettings, root: Path
) -> str:
    """A view of ``relation`` with ``source``'s personal-data columns as pseudonyms (the
    relation itself when it has none)."""
    if not source.pii:
        return relation
    register_key(session, load_key(settings, root, source))
    columns = [c for c, _ in session.columns(relation)]
    view = f"{relation}_pseudonymized"
    session.define(view, pseudonymized_sql(relation, columns, dict(source.pii), source))
    return view
