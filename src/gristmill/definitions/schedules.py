"""Schedules: when the scheduler queues a run by itself.

``gm.schedule("nightly", cron="30 2 * * *", timezone="Europe/Berlin", select="+churn")``
queues a build of ``+churn`` every night at 02:30 Berlin time. Ticks follow Debian's cron
(through cronsim) across daylight-saving changes: a time skipped in spring runs right
after the change, a time repeated in autumn runs once.

Catch-up decides what happens to ticks the scheduler did not see on time (it was down):
``latest`` (the default) runs only the newest of them, ``all`` runs each in order,
``skip`` runs none of them; ticks older than ``catchup_window`` are never run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gristmill.definitions.graph import selectors
from gristmill.definitions.models import parse_duration
from gristmill.definitions.objects import Definition, _caller_location, check_name
from gristmill.definitions.urls import check_url
from gristmill.errors import DefinitionError, Location

ON_TIME = timedelta(seconds=60)
"""A tick seen within this of its time is on time (``catchup="skip"`` still runs it)."""


class Catchup(StrEnum):
    LATEST = "latest"
    ALL = "all"
    SKIP = "skip"


class Backoff(StrEnum):
    EXPONENTIAL = "exponential"
    FIXED = "fixed"


@dataclass(frozen=True)
class Retry:
    """How often and how long after a transient failure a run is tried again."""

    attempts: int
    backoff: Backoff
    base: timedelta
    jitter: bool

    def delay(self, attempt: int) -> timedelta:
        """The wait before try ``attempt + 1`` (without jitter), ``attempt`` counting from 1."""
        if self.backoff is Backoff.FIXED:
            return self.base
        factor: int = 2 ** (attempt - 1)
        return self.base * factor


def retry(
    attempts: int = 3,
    *,
    backoff: str = "exponential",
    base: str | timedelta = "30s",
    jitter: bool = True,
) -> Retry:
    """Try a run again after a transient failure (an unreachable server, a lock), at most
    ``attempts`` times in all; never after invalid input."""
    location = _caller_location()
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
        raise DefinitionError(
            f"retry attempts must be a whole number from 1 to 100, not {attempts!r}",
            location=location,
        )
    try:
        kind = Backoff(backoff)
    except ValueError:
        raise DefinitionError(
            f"unknown backoff {backoff!r}",
            location=location,
            hint="backoff is 'exponential' or 'fixed'",
        ) from None
    wait = parse_duration(base, location, "retry base")
    if wait <= timedelta(0):
        raise DefinitionError(f"retry base must be positive, not {base!r}", location=location)
    return Retry(attempts=attempts, backoff=kind, base=wait, jitter=bool(jitter))


@dataclass(frozen=True)
class Schedule(Definition):
    cron: str
    timezone: str
    select: tuple[str, ...]
    catchup: Catchup
    catchup_window: timedelta
    timeout: timedelta | None
    retries: Retry | None
    on_failure: str | None
    full_refresh: bool
    deadline: timedelta | None = None
    """A tick's run not finished this long after the tick is late: an alert."""
    tags: tuple[str, ...] = ()
    """Its runs' tags: ``[runs] tag_limits`` bound how many run at once."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def ticks(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The ticks in ``(after, until]``, as UTC times, oldest first."""
        from cronsim import CronSim

        start = after.astimezone(self.zone)
        for local in CronSim(self.cron, start):
            tick = local.astimezone(UTC)
            if tick > until:
                return
            if tick > after:
                yield tick

    def next_ticks(self, after: datetime, count: int) -> list[datetime]:
        from cronsim import CronSim

        found: list[datetime] = []
        for local in CronSim(self.cron, after.astimezone(self.zone)):
            if local.astimezone(UTC) > after:
                found.append(local.astimezone(UTC))
            if len(found) == count:
                break
        return found

    def validate_refs(self, nodes: Mapping[str, Definition]) -> None:
        from gristmill.definitions.graph import check_selection

        check_selection(f"schedule {self.name!r}", self.select, nodes, self.location)


def schedule(
    name: str,
    *,
    cron: str,
    timezone: str = "UTC",
    select: str | Sequence[str] = (),
    catchup: str = "latest",
    catchup_window: str | timedelta = "3d",
    timeout: str | timedelta | None = None,
    retries: Retry | None = None,
    on_failure: str | None = None,
    full_refresh: bool = False,
    deadline: str | timedelta | None = None,
    tags: Sequence[str] = (),
    description: str = "",
) -> Schedule:
    """Queue a build of ``select`` (default: everything) at each tick of ``cron``.

    Args:
        cron: five fields (minute hour day month weekday), as in crontab(5); ``L``, ``#``
            and names (``MON``, ``JAN``) work as in Debian's cron.
        timezone: an IANA zone, e.g. ``Europe/Berlin``; the ticks follow its clock.
        catchup: ``latest`` (default), ``all`` or ``skip``: what runs of the ticks the
            scheduler missed (see the module's doc); ``catchup_window`` bounds how far back.
        timeout: a run past it is stopped and marked ``timed_out``.
        retries: ``gm.retry(3, backoff="exponential", base="30s")`` for transient failures.
        on_failure: a URL that gets a JSON POST when a run of this schedule fails, or
            misses its deadline.
        deadline: how long after its tick a run must have finished, e.g. ``"3h30m"`` for a
            02:30 schedule that must be done by 06:00; a late one is an alert (once per tick).
    """
    location = _caller_location()
    check_name(name, location)
    _check_cron(cron, location)
    _check_zone(timezone, location)
    try:
        policy = Catchup(catchup)
    except ValueError:
        raise DefinitionError(
            f"unknown catchup {catchup!r}",
            location=location,
            hint="catchup is 'latest' (run the newest missed tick), 'all' or 'skip'",
        ) from None
    window = parse_duration(catchup_window, location, "catchup_window")
    if window < ON_TIME:
        raise DefinitionError(
            f"catchup_window {catchup_window!r} is shorter than a minute: no tick would run",
            location=location,
            hint="a tick seen within 60 s of its time is on time; write at least 1m",
        )
    limit = parse_duration(timeout, location, "timeout") if timeout is not None else None
    if limit is not None and limit <= timedelta(0):
        raise DefinitionError(f"timeout must be positive, not {timeout!r}", location=location)
    if retries is not None and not isinstance(retries, Retry):
        raise DefinitionError(
            "retries must be gm.retry(...)", location=location, hint="e.g. retries=gm.retry(3)"
        )
    if on_failure is not None and (problem := check_url(on_failure)) is not None:
        raise DefinitionError(f"schedule {name!r}: on_failure: {problem}", location=location)
    late = parse_duration(deadline, location, "deadline") if deadline is not None else None
    if late is not None and on_failure is None:
        raise DefinitionError(
            f"schedule {name!r}: a deadline needs on_failure= (where its alert is sent)",
            location=location,
            hint='add on_failure="https://..." (it also hears of failed runs)',
        )
    if late is not None and late <= timedelta(0):
        raise DefinitionError(f"deadline must be positive, not {deadline!r}", location=location)
    return Schedule(
        name=name,
        location=location,
        description=description,
        cron=" ".join(cron.split()),
        timezone=timezone,
        select=selectors(select, location),
        catchup=policy,
        catchup_window=window,
        timeout=limit,
        retries=retries,
        on_failure=on_failure,
        full_refresh=full_refresh,
        deadline=late,
        tags=check_tags(tags, location),
    )


TAG_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
"""A run's tag: what schedules, sensors, `run --tag` and `[runs] tag_limits` accept."""


def check_tags(tags: object, location: Location) -> tuple[str, ...]:
    """Tags of a schedule's or sensor's runs: a list of short names."""
    import re

    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise DefinitionError(
            f"tags must be a list of names, not {tags!r}",
            location=location,
            hint='e.g. tags=["warehouse"]',
        )
    bad = [t for t in tags if not isinstance(t, str) or not re.match(TAG_PATTERN, t)]
    if bad:
        raise DefinitionError(
            f"invalid tag(s) {', '.join(repr(t) for t in bad)}",
            location=location,
            hint="tags are letters, digits and _ . : - (at most 64)",
        )
    return tuple(dict.fromkeys(tags))


def _check_cron(cron: str, location: Location) -> None:
    from cronsim import CronSim, CronSimError

    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise DefinitionError(
            f"cannot read the cron expression {cron!r}: it needs 5 fields",
            location=location,
            hint="minute hour day month weekday, e.g. '30 2 * * *' (daily at 02:30)",
        )
    try:
        next(CronSim(cron, datetime(2026, 1, 1)))
    except CronSimError as exc:
        raise DefinitionError(
            f"cannot read the cron expression {cron!r}: {exc}",
            location=location,
            hint="minute hour day month weekday, e.g. '30 2 * * *' (daily at 02:30)",
        ) from None
    except StopIteration:
        raise DefinitionError(
            f"the cron expression {cron!r} never fires", location=location
        ) from None


def _check_zone(zone: str, location: Location) -> None:
    try:
        if not isinstance(zone, str) or not zone or zone.startswith(("/", ".")):
            raise ValueError
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(
            f"unknown time zone {zone!r}",
            location=location,
            hint="an IANA zone such as 'UTC', 'Europe/Berlin' or 'America/New_York'",
        ) from None
