"""What a principal may do: the one permission checkpoint (who it is: ``workspace/auth``).

Every edge turns its caller into a ``Principal`` (an API key, a UI session, or for the
command line the OS user mapped in ``[access]`` or a ``GRISTMILL_TOKEN``) and acts under
it (``acting_as``). Every public method of the service layer begins with ``authorize``
(through ``requires``), which checks the principal's role against ``PERMISSIONS``: this
table is the only place roles are compared, for the CLI, the REST API, the UI and the
serving app alike. The audit trail's actor is the principal's name, never free text.

Masks: columns tagged as personal data (``pii=`` on a source, carried downstream by
name) read per role as ``null``, ``hash``, ``last4`` or ``clear`` in every read path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from gristmill.definitions.config import ROLE_NAMES, AccessSettings
from gristmill.errors import Forbidden

if TYPE_CHECKING:
    import pyarrow as pa

    from gristmill.definitions.graph import Graph


class Action(StrEnum):
    """What a principal asks to do; each public service method names one."""

    READ = "read"
    """Metadata: tables, versions, lineage, runs, models, monitors, schedules, the audit."""
    READ_ROWS = "read_rows"
    """Rows of tables (masks applied): samples, quarantine, predictions, lookups."""
    QUERY = "query"
    """Free SQL over pinned table versions (the SQL page, the notebook connection)."""
    RUN = "run"
    """Trigger, cancel or backfill runs; ingest files; score; evaluate monitors; train."""
    PROMOTE = "promote"
    """Move an alias when its gates pass; roll back; approve a pending promotion."""
    OVERRIDE = "override"
    """Promote past failing gates."""
    ERASE = "erase"
    """Erase a person's rows everywhere."""
    MANAGE_KEYS = "manage_keys"
    """Create, list and revoke API keys."""
    MANAGE_OTHERS = "manage_others"
    """Replace or delete what another principal saved (a saved query)."""
    PREDICT = "predict"
    """Ask a service for a prediction."""
    SERVICE_METADATA = "service_metadata"
    """A service's model metadata and readiness (Open Inference Protocol)."""
    INGEST = "ingest"
    """Post rows to an intake source."""
    METRICS = "metrics"
    """Prometheus metrics."""
    OPENAPI = "openapi"
    """The API's OpenAPI document (any valid key)."""


PHRASES: Mapping[Action, str] = {
    Action.READ: "read metadata",
    Action.READ_ROWS: "read rows",
    Action.QUERY: "run SQL queries",
    Action.RUN: "start or cancel runs",
    Action.PROMOTE: "promote models",
    Action.OVERRIDE: "override failing gates",
    Action.ERASE: "erase personal data",
    Action.MANAGE_KEYS: "manage API keys",
    Action.MANAGE_OTHERS: "replace what others saved",
    Action.PREDICT: "ask for predictions",
    Action.SERVICE_METADATA: "read service metadata",
    Action.INGEST: "post rows to intake sources",
    Action.METRICS: "read metrics",
    Action.OPENAPI: "read the API document",
}
assert set(PHRASES) == set(Action)

_VIEWER = frozenset(
    {Action.READ, Action.READ_ROWS, Action.SERVICE_METADATA, Action.METRICS, Action.OPENAPI}
)
_ANALYST = _VIEWER | {Action.QUERY}
_ENGINEER = _ANALYST | {Action.RUN, Action.PROMOTE}
PERMISSIONS: Mapping[str, frozenset[Action]] = {
    "viewer": _VIEWER,
    "analyst": _ANALYST,
    "engineer": _ENGINEER,
    "admin": frozenset(Action),
    "service": frozenset({Action.PREDICT, Action.SERVICE_METADATA, Action.OPENAPI}),
    "ingest": frozenset({Action.INGEST, Action.OPENAPI}),
}
"""Role -> the actions it may take. The docs publish this table (docs/access.md)."""
assert set(PERMISSIONS) == set(ROLE_NAMES)

LEGACY_ROLES: Mapping[str, str] = {"reader": "viewer"}
"""Role names of keys made before the roles were renamed."""

MASKS: Mapping[str, str] = {
    "viewer": "null",
    "analyst": "hash",
    "engineer": "clear",
    "admin": "clear",
    "service": "clear",
    "ingest": "null",
}
"""How personal-data columns read per role unless ``[access.masks]`` says otherwise."""


@dataclass(frozen=True)
class Principal:
    """Who is acting: ``user:alice`` (the CLI), ``key:1a2b3c4d`` (an API key or a UI
    session opened with one), or ``system:<what>`` (a monitor's own retraining)."""

    name: str
    role: str

    def may(self, action: Action) -> bool:
        return action in PERMISSIONS.get(self.role, frozenset())

    def to_dict(self) -> dict[str, Any]:
        allowed = [a.value for a in Action if self.may(a)]
        return {"name": self.name, "role": self.role, "may": allowed}


_acting: ContextVar[Principal | None] = ContextVar("gristmill_principal", default=None)


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Everything called inside acts as ``principal`` (per thread and per task)."""
    token = _acting.set(principal)
    try:
        yield principal
    finally:
        _acting.reset(token)


def current() -> Principal | None:
    return _acting.get()


def authorize(principal: Principal, action: Action, what: str = "") -> Principal:
    """The principal, if its role may take ``action``; else ``Forbidden`` naming who may."""
    if principal.may(action):
        return principal
    may = sorted(role for role, actions in PERMISSIONS.items() if action in actions)
    on = f" on {what}" if what else ""
    raise Forbidden(
        f"{principal.name} (role {principal.role}) may not {PHRASES[action]}{on}",
        hint=f"roles that may: {', '.join(may)}",
    )


P = ParamSpec("P")
R = TypeVar("R")


def requires(action: Action) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Begin a service method with ``authorize`` (the object is its first argument)."""

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            owner = args[0]
            ws: Any = getattr(owner, "ws", owner)
            what = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            authorize(ws.principal, action, what)
            return method(*args, **kwargs)

        guarded.__gristmill_action__ = action  # type: ignore[attr-defined]
        return guarded

    return wrap


# ---- masks ---------------------------------------------------------------------------


def mask_of(settings: AccessSettings, role: str) -> str:
    chosen: str = settings.masks.get(role, MASKS.get(role, "null"))  # type: ignore[call-overload]
    return chosen


def personal_columns(graph: Graph) -> dict[str, dict[str, str]]:
    """Table -> {column: personal-data kind}: a source's ``pii=`` columns, and downstream
    every column of the same name in a table that reads (directly or not) a tagged one.
    By name, so a renamed column is not followed: tag it again or keep its name."""
    tagged: dict[str, dict[str, str]] = {}
    for name in graph.order:
        node = graph.nodes[name]
        own = dict(getattr(node, "pii", ()) or ())
        carried: dict[str, str] = {}
        for dep in graph.nodes[name].dependencies:
            carried.update(tagged.get(dep, {}))
        merged = {**carried, **own}
        if merged:
            tagged[name] = merged
    return tagged


def mask_sql(column: str, mask: str) -> str:
    """A DuckDB expression that reads ``column`` (already quoted) under ``mask``."""
    if mask == "clear":
        return column
    if mask == "hash":
        digest = f"substr(sha256(CAST({column} AS VARCHAR)), 1, 16)"
        return f"CASE WHEN {column} IS NULL THEN NULL ELSE {digest} END"
    if mask == "last4":
        return (
            f"CASE WHEN {column} IS NULL THEN NULL ELSE "
            f"'…' || right(CAST({column} AS VARCHAR), 4) END"
        )
    return "CAST(NULL AS VARCHAR)"


def mask_arrow(data: pa.Table, masks: Mapping[str, str]) -> pa.Table:
    """``data`` with each column named in ``masks`` read through its mask (DuckDB over the
    Arrow table: the same expressions as the SQL page's views)."""
    import duckdb

    present = {c: m for c, m in masks.items() if c in data.column_names and m != "clear"}
    if not present:
        return data
    columns = ", ".join(
        f"{mask_sql(_quote(c), present[c])} AS {_quote(c)}" if c in present else _quote(c)
        for c in data.column_names
    )
    con = duckdb.connect()
    try:
        con.register("__gm_masked", data)
        return con.sql(f"SELECT {columns} FROM __gm_masked").to_arrow_table()
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
