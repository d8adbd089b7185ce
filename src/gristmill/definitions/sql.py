"""SQL steps: parsing (DuckDB dialect), table references and a normalized form.

The normalized form is what the fingerprint hashes, so reformatting a query or editing
its comments does not make the step stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.errors import DefinitionError, Location

if TYPE_CHECKING:
    from sqlglot import exp

DIALECT = "duckdb"


@dataclass(frozen=True)
class ParsedSql:
    text: str
    normalized: str
    references: tuple[str, ...]


_CACHE: list[Path] = []
"""The folder of parsed SQL kept between processes (set by the loader for a project)."""


def use_cache(folder: Path) -> None:
    """Keep what parsing finds in ``folder`` (a SQL text parsed before by the same sqlglot
    is not parsed again, nor sqlglot imported: a no-op run of a project starts faster)."""
    _CACHE[:] = [folder]


def parse_sql(text: str, location: Location) -> ParsedSql:
    """Parse one SELECT statement and list the tables it reads (a text parsed before is
    not parsed again: planning fingerprints every SQL step of a run)."""
    return _parse(text, location)


@lru_cache(maxsize=4096)
def _parse(text: str, location: Location) -> ParsedSql:
    path = _cache_path(text)
    if path is not None:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            return ParsedSql(text, cached["normalized"], tuple(cached["references"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not there yet (or unreadable): parse, and keep it
    parsed = _parse_now(text, location)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            data = {"normalized": parsed.normalized, "references": list(parsed.references)}
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only project parses each time
    return parsed


def _cache_path(text: str) -> Path | None:
    if not _CACHE:
        return None
    from importlib.metadata import version

    key = hashlib.sha256(f"{version('sqlglot')}\0{DIALECT}\0{text}".encode()).hexdigest()
    return _CACHE[0] / f"{key[:32]}.json"


def _parse_now(text: str, location: Location) -> ParsedSql:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
    except TokenError as exc:  # an unclosed quote, a stray character: no line from sqlglot
        raise DefinitionError(
            f"SQL syntax error: {str(exc)[:200]}",
            location=location,
            hint="look for an unclosed quote or comment",
        ) from None
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        line = err.get("line")
        base = location.line or 1
        where = Location(location.path, base + line - 1 if line else location.line)
        raise DefinitionError(
            f"SQL syntax error: {err.get('description', str(exc))}",
            location=where,
            hint="the step must be one SELECT statement in DuckDB's dialect",
        ) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise DefinitionError(
            "a SQL step must be exactly one SELECT (or WITH ... SELECT) statement",
            location=location,
        )
    tree = statements[0]
    return ParsedSql(
        text=text,
        normalized=tree.sql(dialect=DIALECT, comments=False),
        references=_references(tree),
    )


def _references(tree: exp.Expr) -> tuple[str, ...]:
    from sqlglot import exp

    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    names: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or table.args.get("db"):
            continue
        if table.name not in ctes:
            names.add(table.name)
    return tuple(sorted(names))
