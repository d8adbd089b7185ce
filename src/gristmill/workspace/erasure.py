"""Erasing a person: their rows out of every table that carries the key, across history.

``erase(ws, "user_id", "42")`` finds every table in the lake with a ``user_id`` column
(quarantine tables, training sets and prediction logs included), deletes the rows whose
value is the subject — or its pseudonym, where a source tags ``user_id`` as personal
data — as a new version of each, then makes that version the table's only one (a
checkpoint, a vacuum with no retention, the older log entries removed: their file
statistics may hold the value), brings the online store up to date, and checks every
Parquet file and log entry left for the value. The erasure is one run (no other run
writes meanwhile) and an entry of the erasure trail, which keeps a keyed digest of the
subject, never the subject itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gristmill.errors import GristmillError
from gristmill.storage.catalog.records import ErasureRecord, utcnow
from gristmill.storage.catalog.runs import RunRequest

if TYPE_CHECKING:
    from gristmill.workspace.core import Workspace

RETENTION_HOURS = 0
"""The vacuum's retention after an erasure: nothing older than the erasing version stays."""
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ErasureError(GristmillError):
    """An erasure was asked wrongly, or could not be verified."""

    category = "invalid"
    exit_code = 2


@dataclass(frozen=True)
class ErasedTable:
    table: str
    rows: int
    """Rows deleted from the latest version."""
    before: int
    after: int
    """The version before and the version that is now the only one."""
    files_removed: int


@dataclass(frozen=True)
class Erasure:
    """What ``gristmill erase`` did, as the CLI and the API show it."""

    run_id: str
    column: str
    subject: str
    """A keyed digest of the value (HMAC-SHA256 with the project's pii key, else SHA-256)."""
    actor: str
    at: datetime
    tables: list[ErasedTable]
    checked: list[str]
    """Every table that has the column: each was searched, file by file."""
    online: list[str]
    """Online feature views brought up to date."""
    retention_hours: int = RETENTION_HOURS
    verified: bool = True
    remaining: list[str] = field(default_factory=list)


def parse_subject(text: str) -> tuple[str, str]:
    """``user_id=42`` -> ("user_id", "42")."""
    column, sep, value = text.partition("=")
    column, value = column.strip(), value.strip()
    if not sep or not _COLUMN.match(column) or value == "":
        raise ErasureError(
            f"--subject {text!r} is not COLUMN=VALUE",
            hint="e.g. --subject user_id=42 (the column that identifies the person)",
        )
    return column, value


def erase(ws: Workspace, column: str, value: str, *, actor: str) -> Erasure:
    lake, catalog = ws.lake, ws.catalog
    column = _known_column(ws, column)
    values = _matching_values(ws, column, value)
    request = RunRequest(
        kind="erase", selection=column, params={"erase": column}, requested_by=actor
    )
    with ws.coordinator.start(request) as active:
        erased, checked = [], []
        for name in lake.tables():
            latest = lake.latest_version(name)
            if latest is None:
                continue
            schema = lake.schema(name, latest)
            if column not in schema.names:
                continue
            checked.append(name)
            literals = _literals(schema.field(column).type, values)
            if not literals:
                continue
            predicate = f"{_quote(column)} IN ({', '.join(literals)})"
            count = _count(ws, name, latest, column, literals)
            after = latest
            if count:
                after = _delete(ws, name, predicate, active.run_id)
            removed = 0
            if lake.files_holding(name, column, values):
                removed = lake.forget_history(name)
            if count or removed:
                erased.append(ErasedTable(name, count, latest, after, removed))
        buffered = _erase_buffered(ws, column, values)
        online = [s.view for s in ws.sync_online()]
        remaining = [
            f"{name}/{path}"
            for name in checked
            for path in lake.files_holding(name, column, values)
        ]
        remaining += _online_remaining(ws, column, values)
        remaining += _buffers_holding(ws, values)
        record = Erasure(
            run_id=active.run_id,
            column=column,
            subject=_digest(ws, column, value),
            actor=actor,
            at=utcnow(),
            tables=erased,
            checked=checked,
            online=online,
            verified=not remaining,
            remaining=remaining,
        )
        catalog.record_erasure(
            ErasureRecord(
                run_id=record.run_id,
                column_name=column,
                subject=record.subject,
                actor=actor,
                at=record.at,
                details={
                    "tables": [t.__dict__ for t in erased],
                    "checked": checked,
                    "online": online,
                    "intake_rows": buffered,
                    "retention_hours": RETENTION_HOURS,
                    "verified": record.verified,
                    "remaining": remaining,
                },
            )
        )
        if remaining:
            active.finish("failed", error=f"erasure not verified: {', '.join(remaining)}")
            raise ErasureError(
                f"the subject's {column} is still in {', '.join(remaining[:5])}",
                hint="this is a bug in gristmill; the erasure trail records what was done",
            )
        rows = sum(t.rows for t in erased)
        active.finish("success", {"rows_erased": rows, "tables": [t.table for t in erased]})
    return record


def erasures(ws: Workspace) -> list[ErasureRecord]:
    return ws.catalog.erasures()


def _known_column(ws: Workspace, column: str) -> str:
    """The column as the tables spell it (matched without regard to case, as SQL does);
    an error when no table, and no intake source, has it."""
    from gristmill.definitions.sources import IntakeSource

    seen: set[str] = set()
    for name in ws.lake.tables():
        latest = ws.lake.latest_version(name)
        if latest is not None:
            seen.update(ws.lake.schema(name, latest).names)
    for node in ws.graph.sources():
        if isinstance(node, IntakeSource):
            seen.update(node.contract.columns)
    for name in sorted(seen):
        if name.lower() == column.lower():
            return name
    raise ErasureError(
        f"no table has a column {column!r}: nothing to erase by it",
        hint="name the column that identifies the person in your tables, e.g. "
        "--subject user_id=42 (`gristmill tables` lists them)",
    )


def _erase_buffered(ws: Workspace, column: str, values: list[str]) -> int:
    """The subject's rows out of the intake buffers (posted, not landed yet): they would
    land after the erasure. Returns how many rows went."""
    from gristmill.definitions.sources import IntakeSource
    from gristmill.execution.sources.intake import open_buffer

    removed = 0
    for node in ws.graph.sources():
        if isinstance(node, IntakeSource) and column in node.contract.columns:
            kind = dict(node.pii).get(column)
            buffer = open_buffer(ws.root / ".gristmill", node)
            try:
                removed += buffer.erase(column, set(values), _normalizer(kind))
            finally:
                buffer.close()
    return removed


def _normalizer(kind: str | None) -> Any:
    """How a posted value is compared with the subject: as the pseudonym's normalization
    for its kind of personal data (an e-mail's case and spaces), else as text."""
    if kind in ("email", "name"):
        return lambda v: str(v).strip().lower()
    if kind == "phone":
        return lambda v: re.sub(r"[^0-9+]", "", str(v))
    if kind == "id":
        return lambda v: str(v).strip()
    return str


def _buffers_holding(ws: Workspace, values: list[str]) -> list[str]:
    """Intake buffer files (the database, its journal) whose bytes still hold a value."""
    folder = ws.root / ".gristmill" / "intake"
    if not folder.is_dir():
        return []
    needles = [v.lower().encode() for v in values if len(v) >= 3]
    out = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            data = path.read_bytes().lower()
            if any(n in data for n in needles):
                out.append(str(path.relative_to(ws.root)))
    return out


def _matching_values(ws: Workspace, column: str, value: str) -> list[str]:
    """The value as given and, for every kind of personal data a source tags ``column``
    with, its pseudonym (what such a source stored)."""
    from gristmill.definitions.sources import Source

    kinds: dict[str, Source] = {}
    for node in ws.graph.sources():
        assert isinstance(node, Source)
        for tagged, kind in node.pii:
            if tagged == column:
                kinds.setdefault(kind, node)
    values = [value]
    if not kinds:
        return values
    from gristmill.execution.sources.pii import pseudonymize
    from gristmill.execution.sql import q

    settings = ws.project.config.pii
    with ws.engine_session() as (session, _):
        literal = "'" + value.replace("'", "''") + "'"
        session.define("__gm_subject", f"SELECT {literal} AS {q(column)}")
        for kind, source in kinds.items():
            one = replace(source, pii=((column, kind),))
            view = pseudonymize(session, one, "__gm_subject", settings, ws.root)
            ((pseudonym,),) = session.rows(f"SELECT {q(column)} FROM {q(view)}")
            values.append(str(pseudonym))
    return values


def _literals(kind: Any, values: list[str]) -> list[str]:
    """The values as SQL literals of the column's type (those that are of it)."""
    import pyarrow as pa

    out = []
    for value in values:
        if pa.types.is_integer(kind):
            if re.fullmatch(r"[+-]?\d+", value.strip()):
                out.append(str(int(value)))
        elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            try:
                out.append(repr(float(value)))
            except ValueError:
                continue
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            out.append("'" + value.replace("'", "''") + "'")
    return out


def _quote(column: str) -> str:
    return f'"{column}"'


def _count(ws: Workspace, name: str, version: int, column: str, literals: list[str]) -> int:
    with ws.engine_session() as (session, scan):
        from gristmill.execution.steps import expose

        expose(session, ws.lake, name, version, alias="__gm_erase", scan=scan)
        ((count,),) = session.rows(
            f'SELECT count(*) FROM "__gm_erase" WHERE {_quote(column)} IN ({", ".join(literals)})'
        )
    return int(count)


def _delete(ws: Workspace, name: str, predicate: str, run_id: str) -> int:
    """Delete as a new version recorded like any other (a table's materialization, copied
    with the new version; the record rides in the commit, so recovery adopts it)."""
    last = ws.catalog.latest(name)
    if last is None:  # a quarantine table, or one the catalog does not know
        version, _ = ws.lake.erase(name, predicate, {"erasure": run_id})
        return version
    now = utcnow()
    template = replace(
        last,
        run_id=run_id,
        mode="erase",
        files=(),
        quarantined=0,
        quarantine_counts={},
        started_at=now,
        finished_at=now,
        version=-1,
    )
    version, deleted = ws.lake.erase(name, predicate, template.to_record())
    rows = ws.lake.count(name, version)
    ws.catalog.record_materialization(
        replace(template, version=version, rows=rows, rows_added=-deleted)
    )
    return version


def _online_remaining(ws: Workspace, column: str, values: list[str]) -> list[str]:
    """Online feature views keyed by ``column`` alone that still answer for a value."""
    out = []
    for view in ws.graph.tables():
        if view.feature is None or not view.feature.online or view.feature.entity != (column,):
            continue
        if any(v is not None for v in ws.online_store.get(view.name, values)):
            out.append(f"online store: {view.name}")
    return out


def _digest(ws: Workspace, column: str, value: str) -> str:
    """The subject as the trail keeps it: keyed with the pii key when the project has one
    (a guess cannot be checked without it), else plain SHA-256."""
    import os

    settings = ws.project.config.pii
    key = os.environ.get(settings.key_env, "").encode()
    if not key and settings.key_file:
        try:
            key = (ws.root / settings.key_file).read_text().strip().encode()
        except OSError:
            key = b""
    message = f"{column}={value}".encode()
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()
