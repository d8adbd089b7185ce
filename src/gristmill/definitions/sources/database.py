"""Database tables and queries: PostgreSQL (through ADBC) and MariaDB/MySQL (connectorx).

Incremental by a cursor column: each extraction reads the rows past the last watermark
minus ``lag`` (rows that commit late with an older cursor value are caught while they are
within the lag) and merges them by primary key into a new Delta version; its watermark
rides in that same commit. Credentials never sit in the definition: the URL names
environment variables (``${SHOP_PASSWORD}``) that are read when connecting.
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

SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
"""URL scheme -> dialect (what reads it: ADBC for PostgreSQL, connectorx for MySQL)."""
_SECRET_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword"})
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
MAX_CHUNK_ROWS = 10_000_000


@dataclass(frozen=True)
class DatabaseSource(Source):
    """A table or query of an operational database, extracted incrementally."""

    url: str
    """With ``${VAR}`` placeholders for secrets, filled from the environment at connect."""
    dialect: str
    table: str | None = None
    query: str | None = None
    cursor: tuple[str, ...] = ()
    """Column(s) whose values only grow with each change: the first is the watermark."""
    primary_key: tuple[str, ...] = ()
    lag: timedelta = timedelta(0)
    chunk_rows: int = 100_000
    soft_delete: str | None = None
    """A column that, when not null, marks the row deleted at the source."""
    capture: str | None = None
    """``logical``: changes read from PostgreSQL's log (a logical replication slot)."""
    slot: str = ""
    """The replication slot's name (``gristmill_<name>`` unless given)."""

    @property
    def source_kind(self) -> str:
        return "database"

    @property
    def incremental(self) -> bool:
        return bool(self.cursor)

    @property
    def captures(self) -> bool:
        """Whether changes come from the server's log rather than a cursor."""
        return self.capture is not None

    def relation_sql(self) -> str:
        """What is read, before the incremental filter: the table or the query."""
        if self.query is not None:
            return self.query
        assert self.table is not None
        return self.table


def database_source(
    name: str,
    *,
    url: str,
    table: str | None = None,
    query: str | None = None,
    cursor: str | Sequence[str] | None = None,
    primary_key: str | Sequence[str] | None = None,
    lag: str | timedelta = "0s",
    chunk_rows: int = 100_000,
    deletes: str = "none",
    columns: Mapping[str, str] | None = None,
    checks: Sequence[RowCheck | tuple[RowCheck, ...]] = (),
    row_count: RowCount | None = None,
    max_quarantine_share: float = 0.05,
    pii: Mapping[str, str] | None = None,
    capture: str | None = None,
    slot: str | None = None,
    description: str = "",
) -> DatabaseSource:
    """Declare a database table (or query) to extract into table ``name``.

    Args:
        url: ``postgresql://user@host:5432/db`` or ``mysql://user@host:3306/db``; put a
            password in the environment and name it: ``postgresql://app:${SHOP_PW}@db/shop``.
        table: ``schema.table`` or ``table``; or ``query``: a SELECT (the cursor filter
            wraps it).
        cursor: the column (or columns) that grows on every insert and update, e.g.
            ``("updated_at", "id")``; without one, every run reads everything again.
        primary_key: the key rows are merged by (needed with a cursor).
        lag: how late a change may become visible after its cursor value (a transaction
            that commits minutes after it set ``updated_at``); each extraction reads again
            from the watermark minus ``lag``.
        chunk_rows: rows per batch streamed from the database.
        deletes: ``"none"`` or ``"soft:COLUMN"`` (a row whose COLUMN is set is deleted).
        columns: optional column types (DuckDB) to keep and cast; others are dropped.
        pii: personal-data columns and their kind (``email``, ``phone``, ``name``, ``id``,
            ``free_text``): stored as keyed HMAC-SHA256 pseudonyms, never as they are.
        capture: ``"logical"`` reads inserts, updates and deletes from PostgreSQL's log
            through a logical replication slot (wal2json) instead of a cursor: needs
            ``table=`` and ``primary_key=``, and ``wal_level = logical`` on the server.
        slot: the replication slot's name (``gristmill_<name>`` by default).
    """
    location = _caller_location()
    check_name(name, location)
    dialect = _dialect(name, url, location)
    if (table is None) == (query is None):
        raise DefinitionError(
            f"database source {name!r}: give table= or query=, one of them",
            location=location,
            hint='table="public.orders" reads a table; query="select ..." a query',
        )
    if table is not None and (not isinstance(table, str) or not _QUALIFIED.match(table)):
        raise DefinitionError(
            f"database source {name!r}: {table!r} is not a table name",
            location=location,
            hint='write schema.table or table, e.g. table="public.orders"; use query= for more',
        )
    cursors = _columns(name, "cursor", cursor, location)
    keys = _columns(name, "primary_key", primary_key, location)
    if cursors and not keys:
        raise DefinitionError(
            f"database source {name!r}: an incremental source (cursor=) needs primary_key=",
            location=location,
            hint="rows read again (within lag=) or changed are merged by their key",
        )
    from gristmill.definitions.models import parse_duration

    lag_value = parse_duration(lag, location, "lag")
    if (
        not isinstance(chunk_rows, int)
        or isinstance(chunk_rows, bool)
        or not 1 <= chunk_rows <= MAX_CHUNK_ROWS
    ):
        raise DefinitionError(
            f"database source {name!r}: chunk_rows must be a whole number from 1 to "
            f"{MAX_CHUNK_ROWS:,}, not {chunk_rows!r}",
            location=location,
        )
    soft = _deletes(name, deletes, location)
    slot_name = _capture(name, capture, slot, dialect, table, cursors, keys, soft, location)
    contract = make_contract(columns, checks, row_count, max_quarantine_share, location)
    if columns:
        needed = [c for c in (*cursors, *keys, *([soft] if soft else [])) if c not in columns]
        if needed:
            raise DefinitionError(
                f"database source {name!r}: columns= leaves out {', '.join(needed)}, "
                "which the source needs (cursor, key or deletes column)",
                location=location,
                hint="add them to columns={...} with their types",
            )
    return DatabaseSource(
        name=name,
        location=location,
        description=description,
        contract=contract,
        url=url,
        dialect=dialect,
        table=table,
        query=query.strip().rstrip(";") if isinstance(query, str) else None,
        cursor=cursors,
        primary_key=keys,
        lag=lag_value,
        chunk_rows=chunk_rows,
        soft_delete=soft,
        capture=capture,
        slot=slot_name,
        pii=check_pii(name, pii, columns or {}, location),
    )


_SLOT = re.compile(r"^[a-z0-9_]{1,63}$")


def _capture(
    name: str,
    capture: str | None,
    slot: str | None,
    dialect: str,
    table: str | None,
    cursors: tuple[str, ...],
    keys: tuple[str, ...],
    soft: str | None,
    location: Location,
) -> str:
    """The slot's name for ``capture="logical"``; the settings it cannot go with refused."""
    if capture is None:
        if slot is not None:
            raise DefinitionError(
                f"database source {name!r}: slot= goes with capture='logical'",
                location=location,
            )
        return ""
    why = None
    if capture != "logical":
        why = f"capture={capture!r} is not understood (use capture='logical')"
    elif dialect != "postgresql":
        why = "capture='logical' reads PostgreSQL's log; MariaDB/MySQL need a cursor"
    elif table is None:
        why = "capture='logical' reads a table (table=), not a query"
    elif not keys:
        why = "capture='logical' needs primary_key= (changes are applied by key)"
    elif cursors or soft:
        why = "capture='logical' sees every change itself: drop cursor= and deletes="
    if why:
        raise DefinitionError(f"database source {name!r}: {why}", location=location)
    chosen = slot if slot is not None else f"gristmill_{name}".lower()
    if not isinstance(chosen, str) or not _SLOT.match(chosen):
        raise DefinitionError(
            f"database source {name!r}: {chosen!r} is not a replication slot name",
            location=location,
            hint="lower-case letters, digits and _, at most 63",
        )
    return chosen


def _dialect(name: str, url: object, location: Location) -> str:
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        raise DefinitionError(
            f"database source {name!r}: url= is text, not {type(url).__name__}",
            location=location,
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise DefinitionError(
            f"database source {name!r}: the URL does not parse", location=location
        ) from None
    dialect = SCHEMES.get(parts.scheme.split("+")[0])
    if dialect is None:
        raise DefinitionError(
            f"database source {name!r}: unsupported database {parts.scheme or '(no scheme)'!r}",
            location=location,
            hint="use postgresql://… or mysql://… (MariaDB too)",
        )
    userinfo, _, hostport = parts.netloc.rpartition("@")
    password = userinfo.partition(":")[2]
    from urllib.parse import parse_qsl

    query_secret = [k for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_KEYS and v]
    if (password and not _PLACEHOLDER.fullmatch(password)) or query_secret:
        raise DefinitionError(
            f"database source {name!r}: the URL holds a password; a project file must not",
            location=location,
            hint="put it in an environment variable and name it in the URL: "
            "postgresql://user:${SHOP_PASSWORD}@host/db",
        )
    if _PLACEHOLDER.search(hostport + parts.path + parts.query):
        raise DefinitionError(
            f"database source {name!r}: ${{…}} placeholders stand for a user or password only",
            location=location,
            hint="write the host, port and database as they are",
        )
    return dialect


def _columns(
    name: str, what: str, value: str | Sequence[str] | None, location: Location
) -> tuple[str, ...]:
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if not isinstance(n, str) or not _COLUMN.match(n)]
    if bad or not names:
        raise DefinitionError(
            f"database source {name!r}: {what}= takes column names, not {value!r}",
            location=location,
        )
    return names


def _deletes(name: str, deletes: str, location: Location) -> str | None:
    if deletes == "none":
        return None
    if isinstance(deletes, str) and deletes.startswith("soft:"):
        column = deletes.removeprefix("soft:")
        if _COLUMN.match(column):
            return column
    raise DefinitionError(
        f"database source {name!r}: deletes={deletes!r} is not understood",
        location=location,
        hint='use "none" or "soft:COLUMN" (a row whose COLUMN is not null is deleted)',
    )


def placeholders(url: str) -> list[str]:
    """The environment variables a URL names."""
    return _PLACEHOLDER.findall(url)


def expand(url: str, environ: Mapping[str, str]) -> str:
    """The URL with its ``${VAR}`` placeholders filled (URL-quoted) from ``environ``."""
    from urllib.parse import quote

    return _PLACEHOLDER.sub(lambda m: quote(environ[m.group(1)], safe=""), url)
