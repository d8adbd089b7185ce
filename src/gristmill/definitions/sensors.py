"""Sensors: runs queued by what happens, not by the clock.

``gm.sensor("new_transactions", on=gm.new_files("transactions"), select="transactions+")``
queues a build of ``transactions`` and what depends on it when files arrive that the
source has not ingested; ``on=gm.new_version("user_profile")`` when a table gets a new
version ("run when upstream changes"); ``on=gm.monitor_alert("churn_drift")`` when a
monitor raises a new alert (a monitor's own ``on_alert=gm.retrain(...)`` needs no
sensor: its alert queues the retrain itself). The scheduler evaluates each sensor at most every
``min_interval``, stores its cursor and the reason, and queues the run in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from gristmill.definitions.graph import check_selection, selectors
from gristmill.definitions.models import parse_duration
from gristmill.definitions.objects import Definition, _caller_location, check_name
from gristmill.definitions.schedules import check_tags
from gristmill.definitions.sources import FileSource, Source
from gristmill.errors import DefinitionError, GraphError


@dataclass(frozen=True)
class Watch:
    """What a sensor watches."""

    kind: str
    """``new_files`` (a file source's unseen files), ``new_data`` (any source's), or
    ``new_version`` (a table's version), ``monitor_alert``."""
    target: str

    def __str__(self) -> str:
        return f"{self.kind}({self.target})"


def new_files(source: str) -> Watch:
    """Files matching a file source's glob that it has not ingested (new or changed)."""
    return Watch("new_files", source)


def new_data(source: str) -> Watch:
    """New data at any source: files it has not ingested, rows past a database source's
    watermark (or changed within its lag) — what its next run would read."""
    return Watch("new_data", source)


def new_version(table: str) -> Watch:
    """A new version of a table or source (whoever built it)."""
    return Watch("new_version", table)


def monitor_alert(monitor: str) -> Watch:
    """A new alert of a monitor (drift, quality, performance)."""
    return Watch("monitor_alert", monitor)


@dataclass(frozen=True)
class Sensor(Definition):
    on: Watch
    select: tuple[str, ...]
    min_interval: timedelta
    full_refresh: bool
    tags: tuple[str, ...] = ()
    """Its runs' tags: ``[runs] tag_limits`` bound how many run at once."""

    def validate_refs(self, nodes: Mapping[str, Definition], monitors: Sequence[str] = ()) -> None:
        if self.on.kind == "monitor_alert":
            if self.on.target not in monitors:
                raise GraphError(
                    f"sensor {self.name!r} watches the alerts of {self.on.target!r}, which is "
                    "not a monitor of the project",
                    location=self.location,
                    hint="monitors: " + (", ".join(sorted(monitors)) or "none"),
                )
            check_selection(f"sensor {self.name!r}", self.select, nodes, self.location)
            return
        target = nodes.get(self.on.target)
        if target is None:
            raise GraphError(
                f"sensor {self.name!r} watches {self.on.target!r}, which the project does not "
                "define",
                location=self.location,
                hint="known: " + ", ".join(sorted(nodes)),
            )
        if self.on.kind == "new_data" and not isinstance(target, Source):
            raise GraphError(
                f"sensor {self.name!r}: new_data needs a source; {self.on.target!r} is a table",
                location=self.location,
                hint=f"watch its versions instead: gm.new_version({self.on.target!r})",
            )
        if self.on.kind == "new_files" and not isinstance(target, FileSource):
            raise GraphError(
                f"sensor {self.name!r}: new_files needs a file source; {self.on.target!r} is "
                "a table",
                location=self.location,
                hint=f"watch its versions instead: gm.new_version({self.on.target!r})",
            )
        check_selection(f"sensor {self.name!r}", self.select, nodes, self.location)


def sensor(
    name: str,
    *,
    on: Watch,
    select: str | Sequence[str] = (),
    min_interval: str | timedelta = "30s",
    full_refresh: bool = False,
    tags: Sequence[str] = (),
    description: str = "",
) -> Sensor:
    """Queue a build of ``select`` (default: everything) when ``on`` sees something new.

    Args:
        on: ``gm.new_files("source")``, ``gm.new_data("source")``,
            ``gm.new_version("table")`` or ``gm.monitor_alert("monitor")``.
        min_interval: the scheduler evaluates the sensor at most this often.
    """
    location = _caller_location()
    check_name(name, location)
    if not isinstance(on, Watch):
        raise DefinitionError(
            f"sensor {name!r}: on= must be gm.new_files(...), gm.new_data(...), "
            "gm.new_version(...) or gm.monitor_alert(...)",
            location=location,
            hint='e.g. on=gm.new_files("transactions")',
        )
    interval = parse_duration(min_interval, location, "min_interval")
    return Sensor(
        name=name,
        location=location,
        description=description,
        on=on,
        select=selectors(select, location),
        min_interval=interval,
        full_refresh=full_refresh,
        tags=check_tags(tags, location),
    )
