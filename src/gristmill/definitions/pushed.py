"""Feature views fed by a stream: the latest values and windowed aggregates per entity.

``gm.stream_features("user_activity", source="events", entity="user_id", timestamp="at",
latest=["plan"], windows={"events_1h": gm.window("count", "1h"), "spent_24h":
gm.window("sum", "24h", of="amount")})`` is a feature view whose SQL gristmill writes:
per entity, the values of its latest row and each aggregate over the rows in the window
that ends at that latest row (not at the wall clock, so a batch build and an online update
over the same rows agree). Every extraction of the source that lands rows recomputes the
view's online rows for the entities it touched, with that same SQL, at once; the next
``gristmill run`` builds the view itself as any other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from gristmill.definitions.contracts import Contract
from gristmill.definitions.objects import FeatureSpec, Table, _caller_location, check_name
from gristmill.errors import DefinitionError

AGGREGATES = ("count", "sum", "min", "max", "avg")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Window:
    """An aggregate over an entity's rows in the ``over`` before its latest row."""

    aggregate: str
    over: timedelta
    of: str | None = None


def window(aggregate: str, over: str | timedelta, *, of: str | None = None) -> Window:
    """``gm.window("count", "1h")``, ``gm.window("sum", "24h", of="amount")``."""
    location = _caller_location()
    if aggregate not in AGGREGATES:
        raise DefinitionError(
            f"window aggregate {aggregate!r} is not one of {', '.join(AGGREGATES)}",
            location=location,
        )
    if aggregate != "count" and of is None:
        raise DefinitionError(f"gm.window({aggregate!r}, ...) needs of=COLUMN", location=location)
    from gristmill.definitions.models import parse_duration

    span = parse_duration(over, location, "over")
    if span <= timedelta(0):
        raise DefinitionError("a window must be longer than 0s", location=location)
    return Window(aggregate, span, of)


def stream_features(
    name: str,
    *,
    source: str,
    entity: str,
    timestamp: str,
    latest: Sequence[str] = (),
    windows: Mapping[str, Window] | None = None,
    description: str = "",
) -> Table:
    """Declare a feature view over a stream or intake source, updated online as rows land.

    Args:
        source: the stream (or intake) source whose rows feed it.
        entity: the column that identifies the entity (one column).
        timestamp: the rows' event time; the view's timestamp is each entity's latest.
        latest: columns whose values are taken from each entity's latest row.
        windows: feature name -> ``gm.window(...)``, over the rows in the window that ends
            at the entity's latest row.
    """
    location = _caller_location()
    check_name(name, location)
    windows = dict(windows or {})
    for column in (source, entity, timestamp, *latest, *windows):
        if not isinstance(column, str) or not _COLUMN.match(column):
            raise DefinitionError(
                f"stream features {name!r}: {column!r} is not a name", location=location
            )
    for feature, spec in windows.items():
        if not isinstance(spec, Window):
            raise DefinitionError(
                f"stream features {name!r}: {feature!r} is not a gm.window(...)",
                location=location,
                hint='e.g. windows={"events_1h": gm.window("count", "1h")}',
            )
    taken = [entity, timestamp, *latest, *windows]
    if len(set(taken)) != len(taken):
        raise DefinitionError(
            f"stream features {name!r}: a column is named twice among entity, timestamp, "
            "latest and windows",
            location=location,
        )
    if not latest and not windows:
        raise DefinitionError(
            f"stream features {name!r}: give latest= columns, windows=, or both",
            location=location,
        )
    return Table(
        name=name,
        location=location,
        description=description,
        contract=Contract(),
        sql=features_sql(source, entity, timestamp, tuple(latest), windows),
        feature=FeatureSpec((entity,), timestamp, online=True, pushed_from=source),
    )


def features_sql(
    source: str,
    entity: str,
    timestamp: str,
    latest: tuple[str, ...],
    windows: Mapping[str, Window],
) -> str:
    """The view's SQL (DuckDB): each entity's latest row, and each window's aggregate over
    the rows in (latest - window, latest]. Rows without an entity or a time are left out."""

    def q(name: str) -> str:
        return f'"{name}"'

    order = ", ".join([f"{q(timestamp)} DESC", *(f"{q(c)} DESC NULLS LAST" for c in latest)])
    keep = ", ".join(q(c) for c in (entity, timestamp, *latest))
    widest = max((w.over for w in windows.values()), default=timedelta(0))
    aggregates = []
    for feature, spec in windows.items():
        inside = (
            f"e.{q(timestamp)} > l.{q(timestamp)} - INTERVAL '{int(spec.over.total_seconds())} "
            "seconds'"
        )
        value = "*" if spec.aggregate == "count" and spec.of is None else f"e.{q(spec.of or '')}"
        aggregates.append(f"{spec.aggregate}({value}) FILTER (WHERE {inside}) AS {q(feature)}")
    latest_part = (
        f"SELECT {keep} FROM {q(source)} WHERE {q(entity)} IS NOT NULL AND "
        f"{q(timestamp)} IS NOT NULL QUALIFY row_number() OVER (PARTITION BY {q(entity)} "
        f"ORDER BY {order}) = 1"
    )
    if not windows:
        return latest_part
    grouped = ", ".join(f"l.{q(c)}" for c in (entity, timestamp, *latest))
    return (
        f"WITH l AS ({latest_part}) SELECT {grouped}, {', '.join(aggregates)} FROM l "
        f"JOIN {q(source)} e ON e.{q(entity)} = l.{q(entity)} AND e.{q(timestamp)} <= "
        f"l.{q(timestamp)} AND e.{q(timestamp)} > l.{q(timestamp)} - INTERVAL "
        f"'{int(widest.total_seconds())} seconds' GROUP BY {grouped}"
    )
