"""Change data capture from PostgreSQL: a logical replication slot, decoded by wal2json.

The first extraction (and a full refresh) creates the slot, then reads the whole table in
a snapshot taken after it: every change that commits later is in the slot, and one that
committed in between is in both, which is harmless — changes are applied in commit order
by key, so replaying one converges on the same rows. Each later extraction peeks at the
slot (up to ``chunk_rows`` changes, whole transactions), applies the transactions whose
commit position is past the one the lake holds — inserts and updates upserted, deletes
deleted, the newest change per key — in one Delta commit whose app transaction
``gristmill.cdc.NAME`` is the last commit position, and only then advances the slot. A
crash before the advance peeks at the same changes again and skips what the lake holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gristmill import failpoints
from gristmill.definitions.contracts import ORDER_COLUMN
from gristmill.definitions.sources.database import DatabaseSource
from gristmill.errors import GristmillError, SourceReadError
from gristmill.execution.checks import DELETED_COLUMN
from gristmill.execution.sources.database import _connection, _Postgres
from gristmill.execution.sql import q
from gristmill.planning.planner import SourceOffer, WriteMode

if TYPE_CHECKING:
    from gristmill.execution.steps import StepContext
    from gristmill.storage.catalog import Materialization

PLUGIN = "wal2json"
STATE_KEY = "cdc"
RAW = "__gm_changes"
PEEK_LIMIT_FOR_DISCOVERY = 10_000


@dataclass(frozen=True)
class LogState:
    """How far a captured source got: the commit position (LSN) of the last transaction
    it applied, and the slot it reads."""

    position: int
    slot: str
    changes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "lsn": lsn_text(self.position),
            "position": self.position,
            "slot": self.slot,
            "changes": self.changes,
        }

    @classmethod
    def of(cls, m: Materialization | None) -> LogState | None:
        data = (m.stats or {}).get(STATE_KEY) if m is not None else None
        if not data:
            return None
        return cls(int(data["position"]), str(data["slot"]), int(data.get("changes") or 0))


def app_id(source: DatabaseSource) -> str:
    return f"gristmill.cdc.{source.name}"


def lsn_int(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


# ---- the slot ------------------------------------------------------------------------


class _Log(_Postgres):
    """A plain (autocommit) session for the slot: create, peek, advance."""

    AUTOCOMMIT = True

    def begin(self) -> None:
        """No snapshot: each statement on its own."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            self._cursor.execute(sql)
            return [tuple(r) for r in self._cursor.fetchall()]
        except Exception as exc:  # noqa: BLE001
            raise self._log_failure(exc) from None

    def one(self, sql: str) -> tuple[Any, ...]:
        found = self.rows(sql)
        return found[0] if found else ()

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing after a failure: nothing more to say
            pass

    def _log_failure(self, exc: BaseException) -> GristmillError:
        text = str(exc)
        name = self.source.name
        if "wal_level" in text:
            return SourceReadError(
                f"database source {name!r}: postgresql at {self.where} does not keep a "
                "logical log (wal_level is not logical)",
                location=self.source.location,
                hint="set wal_level = logical in postgresql.conf and restart the server, "
                "or read the table with a cursor= instead of capture=",
            )
        if "may not be used as an output plugin" in text or (
            PLUGIN in text and "could not access file" in text
        ):
            return SourceReadError(
                f"database source {name!r}: postgresql at {self.where} cannot decode its "
                f"log with {PLUGIN}",
                location=self.source.location,
                hint="install wal2json on the server (Debian: postgresql-15-wal2json) and, "
                "where the server asks for it, add it to output_plugin_libraries",
            )
        if "permission denied" in text or "must be superuser or replication" in text:
            return SourceReadError(
                f"database source {name!r}: the user may not use replication slots at {self.where}",
                location=self.source.location,
                hint="grant it: ALTER ROLE <user> WITH REPLICATION",
            )
        return self.failure(exc)

    def qualified(self) -> str:
        """The table as ``schema.table``, resolved by the server (its search path)."""
        from sqlglot import exp

        table = self.source.table or ""
        literal = exp.Literal.string(
            exp.to_table(table, dialect="postgres").sql(dialect="postgres")
        ).sql()
        found = self.one(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            f"ON n.oid = c.relnamespace WHERE c.oid = to_regclass({literal})"
        )
        if not found:
            raise SourceReadError(
                f"database source {self.source.name!r}: postgresql at {self.where} has no "
                f"table {table!r}",
                location=self.source.location,
                hint="check table= and the user's search path",
            )
        schema, name = found
        return f"{_escape(schema)}.{_escape(name)}"

    def fresh_slot(self) -> int:
        """Drop the slot if it is there, create it again: its consistent position."""
        slot = _literal(self.source.slot)
        if self.one(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot}"):
            self.rows(f"SELECT pg_drop_replication_slot({slot})")
        (position,) = self.one(
            f"SELECT lsn::text FROM pg_create_logical_replication_slot({slot}, '{PLUGIN}')"
        )
        return lsn_int(str(position))

    def check_slot_follows(self, position: int) -> None:
        """The slot must not be ahead of what the table holds: it is advanced only after a
        commit, so one that is ahead was made again (dropped, re-created) and has lost the
        changes in between."""
        slot = _literal(self.source.slot)
        found = self.one(
            f"SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = {slot}"
        )
        if found and found[0] is not None and lsn_int(str(found[0])) > position:
            raise SourceReadError(
                f"database source {self.source.name!r}: the replication slot "
                f"{self.source.slot!r} at {self.where} starts at {found[0]}, after the last "
                f"change the table holds ({lsn_text(position)}): it was made again, and the "
                "changes in between are not in it",
                location=self.source.location,
                hint=f"read the table again: gristmill ingest {self.source.name} --full-refresh",
            )

    def peek(self, table: str, limit: int | None) -> list[tuple[int, int, str]]:
        """The slot's next changes (whole transactions): (LSN, xid, wal2json's record)."""
        slot = _literal(self.source.slot)
        if not self.one(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot}"):
            raise SourceReadError(
                f"database source {self.source.name!r}: the replication slot "
                f"{self.source.slot!r} is gone at {self.where} (dropped, or a new server)",
                location=self.source.location,
                hint=f"read the table again: gristmill ingest {self.source.name} --full-refresh",
            )
        options = ", ".join(
            _literal(o)
            for o in (
                "format-version",
                "2",
                "include-types",
                "1",
                "include-transaction",
                "1",
                "add-tables",
                table,
            )
        )
        bound = "NULL" if limit is None else str(int(limit))
        found = self.rows(
            f"SELECT lsn::text, xid::text::bigint, data FROM "
            f"pg_logical_slot_peek_changes({slot}, NULL, {bound}, {options})"
        )
        return [(lsn_int(lsn), int(xid), str(data)) for lsn, xid, data in found]

    def advance(self, position: int) -> None:
        self.rows(
            f"SELECT end_lsn::text FROM pg_replication_slot_advance("
            f"{_literal(self.source.slot)}, '{lsn_text(position)}'::pg_lsn)"
        )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _escape(name: str) -> str:
    """A name as wal2json's add-tables wants it: ``,``, ``.`` and ``\\`` escaped."""
    return re.sub(r"([,.\\ ])", r"\\\1", name)


# ---- discover and extract -------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    order: int
    deleted: bool
    values: dict[str, Any]
    types: dict[str, str]


def committed_changes(records: list[tuple[int, int, str]], after: int) -> tuple[list[Change], int]:
    """The row changes of the transactions that committed past ``after``, in commit
    order, and the last such commit position (``after`` when there is none)."""
    commits: dict[int, int] = {}
    for lsn, xid, data in records:
        if data.startswith('{"action":"C"'):
            commits[xid] = lsn
    last = after
    out: list[Change] = []
    for order, (_lsn, xid, data) in enumerate(records):
        commit = commits.get(xid)
        if commit is None or commit <= after:
            continue
        last = max(last, commit)
        entry = json.loads(data, parse_float=Decimal)
        action = entry.get("action")
        if action not in ("I", "U", "D"):
            continue
        fields = entry.get("columns") if action != "D" else entry.get("identity")
        values = {f["name"]: f.get("value") for f in fields or []}
        types = {f["name"]: str(f.get("type", "")) for f in fields or []}
        out.append(Change(order, action == "D", values, types))
    return out, last


def discover(source: DatabaseSource, last: Materialization | None) -> SourceOffer:
    state = LogState.of(last)
    if state is None:
        return SourceOffer(news="never extracted: reading the table, then its log")
    with _connection(source, kind=_Log) as log:
        assert isinstance(log, _Log)
        log.check_slot_follows(state.position)
        records = log.peek(log.qualified(), PEEK_LIMIT_FOR_DISCOVERY)
    changes, newest = committed_changes(records, state.position)
    if changes:
        more = "+" if len(records) >= PEEK_LIMIT_FOR_DISCOVERY else ""
        return SourceOffer(
            news=f"{len(changes):,}{more} change(s) in the log past {lsn_text(state.position)}"
        )
    if newest > state.position:  # transactions of other tables only: move the slot on
        return SourceOffer(news=f"the log moved past {lsn_text(state.position)}")
    return SourceOffer(unchanged=f"no changes in the log past {lsn_text(state.position)}")


def start(source: DatabaseSource) -> LogState:
    """Before a full read: a new slot, so every change from here on is kept."""
    with _connection(source, kind=_Log) as log:
        assert isinstance(log, _Log)
        log.qualified()  # a table that is not there: said before the slot is made
        return LogState(log.fresh_slot(), source.slot)


def extract(ctx: StepContext, source: DatabaseSource) -> Materialization:
    """Apply the changes past the position the lake holds, then advance the slot."""
    from gristmill.execution.writer import WriteRequest, write

    held = ctx.lake.transaction_version(source.name, app_id(source))
    state = LogState.of(ctx.previous)
    after = held if held is not None else (state.position if state else 0)
    with _connection(source, kind=_Log) as log:
        assert isinstance(log, _Log)
        log.check_slot_follows(after)
        records = log.peek(log.qualified(), source.chunk_rows)
        changes, last = committed_changes(records, after)
        relation = _relation(ctx, source, changes)
        failpoints.hit("after_extract", source.name)
        landed = LogState(last, source.slot, len(changes))
        # the table's extraction number (of its full reads) stays with each version
        number = (ctx.previous.stats or {}).get("source") if ctx.previous else None
        template = replace(
            ctx.template,
            stats={
                **ctx.template.stats,
                STATE_KEY: landed.to_json(),
                **({"source": number} if number else {}),
            },
        )
        request = WriteRequest(
            table=source.name,
            relation=relation,
            contract=source.contract,
            mode=WriteMode.MERGE,
            template=template,
            keep_only_declared=bool(source.contract.columns),
            merge_keys=source.primary_key,
            delete_flag=DELETED_COLUMN,
            transactions={app_id(source): last},
            no_stats=tuple(c for c, _ in source.pii),
        )
        if ctx.lake.transaction_version(source.name, app_id(source)) != held:
            from gristmill.errors import RunInProgressError

            raise RunInProgressError(
                f"database source {source.name!r}: another process applied changes meanwhile",
                hint="run again: it reads past what is in the lake now",
            )
        materialization = write(ctx.session, ctx.lake, request)
        failpoints.hit("before_advance", source.name)
        log.advance(last)
    return materialization


_PG_TYPES = {
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "boolean": "BOOLEAN",
    "double precision": "DOUBLE",
    "real": "FLOAT",
    "date": "DATE",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMPTZ",
}


def _relation(ctx: StepContext, source: DatabaseSource, changes: list[Change]) -> str:
    """The changes as rows of the table's types, the newest per key, with the delete flag
    (every value travels as text, cast to the column's type in the engine)."""
    import pyarrow as pa

    from gristmill.definitions.config import PiiSettings
    from gristmill.execution.sources.pii import pseudonymize

    target: dict[str, str] = {}
    if ctx.previous is not None:
        schema = ctx.lake.schema(source.name, ctx.previous.version)
        ctx.session.register("__gm_target", schema.empty_table())
        target = dict(ctx.session.columns("__gm_target"))
    # the table's columns first (a batch of deletes carries keys alone), then new ones
    names: dict[str, str] = {name: "" for name in target}
    for change in changes:
        for name, kind in change.types.items():
            names.setdefault(name, kind)
    if source.contract.columns:
        names = {n: k for n, k in names.items() if n in source.contract.columns}
    for key in source.primary_key:
        names.setdefault(key, "")
    data: dict[str, Any] = {
        name: pa.array([_text(c.values.get(name)) for c in changes], pa.string()) for name in names
    }
    data[ORDER_COLUMN] = pa.array([c.order for c in changes], pa.int64())
    data[DELETED_COLUMN] = pa.array([True if c.deleted else None for c in changes], pa.bool_())
    ctx.session.register(RAW, pa.table(data))
    casts = []
    for name, kind in names.items():
        wanted = target.get(name) or source.contract.columns.get(name) or _duck_type(kind)
        casts.append(f"CAST({q(name)} AS {wanted}) AS {q(name)}")
    keys = ", ".join(q(k) for k in source.primary_key)
    sql = (
        f"SELECT {', '.join(casts)}, {q(DELETED_COLUMN)} FROM {q(RAW)} QUALIFY "
        f"row_number() OVER (PARTITION BY {keys} ORDER BY {q(ORDER_COLUMN)} DESC) = 1"
    )
    view = RAW + "_rows"
    ctx.session.define(view, sql)
    return pseudonymize(ctx.session, source, view, ctx.pii or PiiSettings(), ctx.root)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _duck_type(kind: str) -> str:
    plain = kind.strip().lower()
    if plain in _PG_TYPES:
        return _PG_TYPES[plain]
    numeric = re.fullmatch(r"numeric\((\d+),\s*(\d+)\)", plain)
    if numeric and int(numeric.group(1)) <= 38:
        return f"DECIMAL({numeric.group(1)}, {numeric.group(2)})"
    return "VARCHAR"
