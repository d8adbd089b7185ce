"""Freshness: how old a table or model may get before someone should hear of it.

``gm.freshness("user_profile", max_age="26h", webhook="https://…", refresh=True)``: when
the table's newest version is older than 26 hours, the scheduler POSTs one alert to the
webhook (once per stale version, whichever scheduler sees it first) and, separately,
because ``refresh=True``, queues a build of ``+user_profile``. Alerting and triggering
are separate settings: an alert without a refresh tells people, a refresh without a
webhook quietly repairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from gristmill.definitions.models import parse_duration
from gristmill.definitions.objects import Definition, _caller_location, check_name
from gristmill.definitions.urls import check_url
from gristmill.errors import DefinitionError, GraphError


@dataclass(frozen=True)
class Freshness(Definition):
    target: str
    max_age: timedelta
    webhook: str | None
    refresh: bool

    def validate_refs(self, nodes: Mapping[str, Definition]) -> None:
        if self.target not in nodes:
            raise GraphError(
                f"freshness {self.name!r} watches {self.target!r}, which the project does not "
                "define",
                location=self.location,
                hint="a table, source, training set or model: " + ", ".join(sorted(nodes)),
            )


def freshness(
    target: str,
    *,
    max_age: str | timedelta,
    webhook: str | None = None,
    refresh: bool = False,
    name: str | None = None,
    description: str = "",
) -> Freshness:
    """Alert when ``target`` (a table, source, training set or model) has no version newer
    than ``max_age``; ``refresh=True`` also queues its rebuild (``+target``)."""
    location = _caller_location()
    if not isinstance(target, str):
        raise DefinitionError(
            f"freshness: the target must be a table or model name, not {target!r}",
            location=location,
        )
    label = name or f"{target}_freshness"
    check_name(label, location)
    age = parse_duration(max_age, location, "max_age")
    if age <= timedelta(0):
        raise DefinitionError(f"max_age must be positive, not {max_age!r}", location=location)
    if webhook is not None and (problem := check_url(webhook)) is not None:
        raise DefinitionError(f"freshness {label!r}: {problem}", location=location)
    if not isinstance(refresh, bool):
        raise DefinitionError(f"refresh must be True or False, not {refresh!r}", location=location)
    return Freshness(
        name=label,
        location=location,
        description=description,
        target=target,
        max_age=age,
        webhook=webhook,
        refresh=refresh,
    )
