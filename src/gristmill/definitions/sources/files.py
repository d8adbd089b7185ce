"""Files: CSV, Parquet or JSON lines under a path or glob of the project."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gristmill.definitions.contracts import RowCheck, RowCount
from gristmill.definitions.objects import _caller_location, check_name, make_contract
from gristmill.definitions.sources.base import Source, check_pii
from gristmill.errors import DefinitionError, Location


class FileFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


_EXTENSIONS = {
    ".csv": FileFormat.CSV,
    ".tsv": FileFormat.CSV,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
    ".jsonl": FileFormat.JSONL,
    ".ndjson": FileFormat.JSONL,
    ".json": FileFormat.JSONL,
}


@dataclass(frozen=True)
class FileSource(Source):
    """Files (a path or glob) ingested incrementally: new files are appended, a changed
    one re-ingests them all. Its state is the manifest of ingested files."""

    path: str
    format: FileFormat
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def source_kind(self) -> str:
        return "files"


def source(
    name: str,
    path: str,
    *,
    columns: Mapping[str, str],
    format: str | None = None,  # noqa: A002
    checks: Sequence[RowCheck | tuple[RowCheck, ...]] = (),
    row_count: RowCount | None = None,
    max_quarantine_share: float = 0.05,
    options: Mapping[str, Any] | None = None,
    pii: Mapping[str, str] | None = None,
    description: str = "",
) -> FileSource:
    """Declare files (a path or glob, relative to the project) to ingest into table ``name``.

    Args:
        name: the raw table the files are ingested into.
        path: file path or glob, e.g. ``data/transactions/*.csv``.
        columns: declared column names and DuckDB types; values that do not cast are
            quarantined with the check ``type(column TYPE)``.
        format: ``csv``, ``parquet`` or ``jsonl``; inferred from the extension if omitted.
        checks: row checks (``gm.not_null``, ``gm.unique``, ...).
        row_count: bounds on the table's rows after ingestion.
        max_quarantine_share: the step fails if a larger share of new rows is quarantined.
        options: extra reader options passed to DuckDB (e.g. ``{"delim": ";"}``).
        pii: personal-data columns and their kind (``email``, ``phone``, ``name``, ``id``,
            ``free_text``): stored as keyed HMAC-SHA256 pseudonyms, never as they are.
    """
    location = _caller_location()
    check_name(name, location)
    if not columns:
        raise DefinitionError(f"source {name!r} declares no columns", location=location)
    fmt = _resolve_format(name, path, format, location)
    contract = make_contract(columns, checks, row_count, max_quarantine_share, location)
    undeclared = contract.unknown_columns(list(columns))
    if undeclared:
        raise DefinitionError(
            f"source {name!r} checks columns it does not declare: {', '.join(undeclared)}",
            location=location,
            hint="add them to columns={...} with their types",
        )
    return FileSource(
        name=name,
        location=location,
        description=description,
        path=path,
        format=fmt,
        contract=contract,
        options=tuple(sorted((options or {}).items())),
        pii=check_pii(name, pii, columns, location),
    )


def _resolve_format(name: str, path: str, given: str | None, location: Location) -> FileFormat:
    valid = ", ".join(f.value for f in FileFormat)
    if given is not None:
        try:
            return FileFormat(given)
        except ValueError:
            raise DefinitionError(
                f"source {name!r}: unknown format {given!r}", location=location, hint=f"use {valid}"
            ) from None
    suffix = Path(path.replace("*", "x")).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DefinitionError(
            f"source {name!r}: cannot tell the format of {path!r}",
            location=location,
            hint=f"pass format= one of {valid}",
        )
    return _EXTENSIONS[suffix]
