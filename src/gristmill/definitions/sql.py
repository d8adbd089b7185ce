"""SQL steps: parsing (DuckDB dialect), table references and a normalized form.

The normalized form is what the fingerprint hashes, so reformatting a query or editing
its comments does not make the step stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from gristmill.errors import DefinitionError, Location

DIALECT = "duckdb"


@dataclass(frozen=True)
class ParsedSql:
    text: str
    normalized: str
    references: tuple[str, ...]


def parse_sql(text: str, location: Location) -> ParsedSql:
    """Parse one SELECT statement and list the tables it reads (a text parsed before is
    not parsed again: planning fingerprints every SQL step of a run)."""
    return _parse(text, location)


@lru_cache(maxsize=4096)
def _parse(text: str, location: Location) -> ParsedSql:
    try:
        statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
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
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    names: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or table.args.get("db"):
            continue
        if table.name not in ctes:
            names.add(table.name)
    return tuple(sorted(names))
