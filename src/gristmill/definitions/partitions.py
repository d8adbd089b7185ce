"""Partitions: a table built and tracked one slice at a time (a day, a month, a key).

``gm.table("daily_spend", sql=..., partitions=gm.daily("day", start="2025-10-01"))``
builds ``daily_spend`` a day at a time: each partition is the table's rows whose ``day``
falls in that day, replaced on its own (a Delta overwrite of just that range) and recorded
in the catalog with its status and the inputs it was built from. A plain ``gristmill run``
builds the latest partition; ``gristmill backfill`` plans and builds a range, only the
partitions that are missing, failed or stale.

Time partitions compare the column with the partition's bounds as the column's own type
would: a DATE or TIMESTAMP column directly, a TIMESTAMP WITH TIME ZONE column in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from gristmill.errors import DefinitionError, InvalidInputError, Location

KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class Granularity(StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"
    STATIC = "static"


@dataclass(frozen=True, order=True)
class Partition:
    """One slice: its key, and for time partitions the half-open range [start, end)."""

    key: str
    start: date | None = None
    end: date | None = None


@dataclass(frozen=True)
class PartitionRange:
    """What a partitioned Python step's ``partition`` parameter gets: the keys it builds
    and, for time partitions, the half-open range [start, end) they cover (rows outside
    it are dropped from the step's result)."""

    keys: tuple[str, ...]
    start: date | None
    end: date | None

    @classmethod
    def of(cls, parts: Sequence[Partition]) -> PartitionRange:
        ordered = sorted(parts)
        return cls(
            tuple(p.key for p in ordered),
            ordered[0].start,
            ordered[-1].end,
        )


@dataclass(frozen=True)
class Partitioning:
    """How a table is sliced: by which column, at which grain, from when (or which keys)."""

    column: str
    granularity: Granularity
    start: date | None = None
    keys: tuple[str, ...] = ()
    end_offset: int = 0
    """0: the latest partition is the last complete one (yesterday); 1: today's too."""
    batch: int = 1
    """How many neighbouring partitions one query and one commit builds at most."""
    upstream: tuple[tuple[str, str], ...] = ()
    """(input, column): the input's column that carries the partition's time or key, when
    it is not named like ``column``; it tells which partitions an input's change touched."""

    def upstream_column(self, dependency: str) -> str:
        return dict(self.upstream).get(dependency, self.column)

    def describe(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "granularity": self.granularity.value,
            "start": str(self.start) if self.start else None,
            "keys": list(self.keys),
            "end_offset": self.end_offset,
            "batch": self.batch,
            "upstream": dict(self.upstream),
        }

    def label(self) -> str:
        if self.granularity is Granularity.STATIC:
            return f"static({self.column}: {len(self.keys)} keys)"
        return f"{self.granularity.value}({self.column}, from {self._key(self._floor(self.start))})"

    # ---- the partitions ----------------------------------------------------------------

    def all(self, now: datetime | None = None) -> list[Partition]:
        """Every partition from the first to the latest (as of ``now``)."""
        if self.granularity is Granularity.STATIC:
            return [Partition(k) for k in self.keys]
        assert self.start is not None
        last = self._last_start(now)
        out: list[Partition] = []
        at = self._floor(self.start)
        while at <= last:
            following = self._next(at)
            out.append(Partition(self._key(at), at, following))
            at = following
        return out

    def latest(self, now: datetime | None = None) -> list[Partition]:
        """What a plain run builds: the latest partition (a static table: every key)."""
        every = self.all(now)
        if self.granularity is Granularity.STATIC:
            return every
        return every[-1:]

    def between(
        self, first: str | None, last: str | None, now: datetime | None = None
    ) -> list[Partition]:
        """The partitions from ``first`` to ``last`` inclusive (None: the first/the latest).

        A month (``2025-10``) names all of its days in a daily table."""
        every = self.all(now)
        if self.granularity is Granularity.STATIC:
            keys = [p.key for p in every]
            lo = self._static_index(first, keys, "--from") if first is not None else 0
            hi = self._static_index(last, keys, "--to") if last is not None else len(keys) - 1
            if lo > hi:
                raise InvalidInputError(
                    f"--from {first} comes after --to {last} in the keys' order",
                    hint=f"the keys, in order: {', '.join(keys)}",
                )
            return every[lo : hi + 1]
        lo_date = self._parse_bound(first, "--from", end=False) if first is not None else None
        hi_date = self._parse_bound(last, "--to", end=True) if last is not None else None
        if lo_date and hi_date and lo_date > hi_date:
            raise InvalidInputError(f"--from {first} comes after --to {last}", hint="swap them")
        assert self.start is not None
        return [
            p
            for p in every
            if p.start is not None
            and (lo_date is None or p.start >= self._floor(lo_date))
            and (hi_date is None or p.start <= hi_date)
        ]

    def parse_key(self, key: str) -> Partition:
        """The partition a key names; an error that says the format if it names none."""
        if self.granularity is Granularity.STATIC:
            if key not in self.keys:
                raise InvalidInputError(
                    f"{key!r} is not a partition key", hint=f"the keys: {', '.join(self.keys)}"
                )
            return Partition(key)
        at = self._parse_bound(key, "partition", end=False)
        if self._floor(at) != at or self._key(at) != key:
            raise InvalidInputError(
                f"{key!r} is not a {self.granularity.value} partition key",
                hint=f"write it as {self._key(self._floor(at))}",
            )
        return Partition(key, at, self._next(at))

    # ---- filters -------------------------------------------------------------------------

    def sql_filter(self, parts: Sequence[Partition], column_type: str = "") -> str:
        """A predicate selecting the rows of ``parts`` (contiguous time partitions as one
        range), in SQL that DuckDB and Delta's writer both read."""
        col = '"' + self.column.replace('"', '""') + '"'
        if self.granularity is Granularity.STATIC:
            keys = ", ".join("'" + p.key.replace("'", "''") + "'" for p in parts)
            return f"{col} IN ({keys})"
        ranges = _contiguous(parts)
        zone = (
            "+00:00"
            if "TIME ZONE" in column_type.upper() or column_type.upper() == "TIMESTAMPTZ"
            else ""
        )
        terms = [
            f"({col} >= '{_bound(lo, column_type)}{zone}' "
            f"AND {col} < '{_bound(hi, column_type)}{zone}')"
            for lo, hi in ranges
        ]
        return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"

    def value_range(self, part: Partition) -> tuple[Any, Any]:
        """Comparable bounds of ``part`` for overlap checks against file statistics."""
        if self.granularity is Granularity.STATIC:
            return part.key, part.key
        assert part.start is not None and part.end is not None
        return datetime.combine(part.start, datetime.min.time()), datetime.combine(
            part.end, datetime.min.time()
        )

    # ---- calendar --------------------------------------------------------------------

    def _floor(self, day: date | None) -> date:
        assert day is not None
        return day.replace(day=1) if self.granularity is Granularity.MONTHLY else day

    def _next(self, at: date) -> date:
        if self.granularity is Granularity.MONTHLY:
            return date(at.year + at.month // 12, at.month % 12 + 1, 1)
        return at + timedelta(days=1)

    def _key(self, at: date) -> str:
        return at.strftime("%Y-%m") if self.granularity is Granularity.MONTHLY else at.isoformat()

    def _last_start(self, now: datetime | None) -> date:
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        current = self._floor(today)
        # the partition holding today is complete only with end_offset >= 1
        at = current
        for _ in range(1 - self.end_offset):
            at = self._previous(at)
        for _ in range(max(self.end_offset - 1, 0)):
            at = self._next(at)
        return at

    def _previous(self, at: date) -> date:
        if self.granularity is Granularity.MONTHLY:
            return date(at.year - (at.month == 1), (at.month - 2) % 12 + 1, 1)
        return at - timedelta(days=1)

    def _parse_bound(self, text: str, what: str, *, end: bool) -> date:
        text = str(text).strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}", text):
                month = date.fromisoformat(text + "-01")
                if end and self.granularity is Granularity.DAILY:
                    return self._month_end(month)
                return month
            return date.fromisoformat(text)
        except ValueError:
            shape = (
                "2025-10" if self.granularity is Granularity.MONTHLY else "2025-10-01 or 2025-10"
            )
            raise InvalidInputError(
                f"{what} {text!r} is not a date", hint=f"write it as {shape}"
            ) from None

    @staticmethod
    def _month_end(month: date) -> date:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        return following - timedelta(days=1)

    @staticmethod
    def _static_index(key: str, keys: list[str], what: str) -> int:
        if key not in keys:
            raise InvalidInputError(
                f"{what} {key!r} is not a partition key", hint=f"the keys: {', '.join(keys)}"
            )
        return keys.index(key)


def _contiguous(parts: Sequence[Partition]) -> list[tuple[date, date]]:
    ranges: list[tuple[date, date]] = []
    for p in sorted(parts):
        assert p.start is not None and p.end is not None
        if ranges and ranges[-1][1] == p.start:
            ranges[-1] = (ranges[-1][0], p.end)
        else:
            ranges.append((p.start, p.end))
    return ranges


def _bound(day: date, column_type: str) -> str:
    if column_type.upper() == "DATE":
        return day.isoformat()
    return f"{day.isoformat()} 00:00:00"


def _start(value: str | date, what: str, location: Location) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return date.fromisoformat(text + "-01" if re.fullmatch(r"\d{4}-\d{2}", text) else text)
        except ValueError:
            pass
    raise DefinitionError(
        f"{what}: start={value!r} is not a date",
        location=location,
        hint='write start="2025-10-01" (or a datetime.date)',
    )


def _column(column: object, what: str, location: Location) -> str:
    if not isinstance(column, str) or not column.strip():
        raise DefinitionError(
            f"{what}: the partition column must be a column name, not {column!r}",
            location=location,
            hint=f'e.g. gm.{what}("day", ...)',
        )
    return column


def _offset(end_offset: object, what: str, location: Location) -> int:
    if not isinstance(end_offset, int) or isinstance(end_offset, bool) or end_offset < 0:
        raise DefinitionError(
            f"{what}: end_offset={end_offset!r} must be 0 (the latest complete partition) or more",
            location=location,
        )
    return end_offset


def _upstream(
    upstream: Mapping[str, str] | None, what: str, location: Location
) -> tuple[tuple[str, str], ...]:
    if upstream is None:
        return ()
    if not isinstance(upstream, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in upstream.items()
    ):
        raise DefinitionError(
            f"{what}: upstream={upstream!r} must map input names to column names",
            location=location,
            hint='e.g. upstream={"events": "ts"}',
        )
    return tuple(sorted(upstream.items()))


def _batch(batch: object, what: str, location: Location) -> int:
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 10_000:
        raise DefinitionError(
            f"{what}: batch={batch!r} must be a whole number from 1 to 10000",
            location=location,
            hint="how many neighbouring partitions one query and one commit build",
        )
    return batch


def daily(
    column: str,
    *,
    start: str | date,
    end_offset: int = 0,
    batch: int = 31,
    upstream: Mapping[str, str] | None = None,
) -> Partitioning:
    """One partition per day of ``column`` (a DATE or TIMESTAMP), from ``start`` on.

    ``batch``: a backfill builds up to this many neighbouring days with one query and one
    commit (each day is still recorded on its own); 1 builds them one at a time.
    ``upstream``: for inputs whose time column is named otherwise, ``{"events": "ts"}``;
    a new version of such an input stales only the days its changed rows fall in."""
    from gristmill.definitions.objects import _caller_location

    location = _caller_location()
    return Partitioning(
        _column(column, "daily", location),
        Granularity.DAILY,
        start=_start(start, "daily", location),
        end_offset=_offset(end_offset, "daily", location),
        batch=_batch(batch, "daily", location),
        upstream=_upstream(upstream, "daily", location),
    )


def monthly(
    column: str,
    *,
    start: str | date,
    end_offset: int = 0,
    batch: int = 12,
    upstream: Mapping[str, str] | None = None,
) -> Partitioning:
    """One partition per calendar month of ``column``, from ``start``'s month on."""
    from gristmill.definitions.objects import _caller_location

    location = _caller_location()
    first = _start(start, "monthly", location)
    return Partitioning(
        _column(column, "monthly", location),
        Granularity.MONTHLY,
        start=first.replace(day=1),
        end_offset=_offset(end_offset, "monthly", location),
        batch=_batch(batch, "monthly", location),
        upstream=_upstream(upstream, "monthly", location),
    )


def static(
    column: str,
    keys: Sequence[str],
    *,
    batch: int = 1,
    upstream: Mapping[str, str] | None = None,
) -> Partitioning:
    """One partition per value of ``column`` in ``keys`` (regions, tenants, ...)."""
    from gristmill.definitions.objects import _caller_location

    location = _caller_location()
    _column(column, "static", location)
    _batch(batch, "static", location)
    if isinstance(keys, str) or not keys:
        raise DefinitionError(
            f"static: keys must be a non-empty list of values, not {keys!r}",
            location=location,
            hint='e.g. gm.static("region", ["eu", "us"])',
        )
    bad = [k for k in keys if not isinstance(k, str) or not re.match(KEY_PATTERN, k)]
    if bad:
        raise DefinitionError(
            f"static: invalid partition key(s) {', '.join(repr(k) for k in bad)}",
            location=location,
            hint="keys are text of letters, digits and _ . : - (at most 64)",
        )
    if len(set(keys)) != len(keys):
        raise DefinitionError("static: the keys repeat a value", location=location)
    return Partitioning(
        column,
        Granularity.STATIC,
        keys=tuple(keys),
        batch=batch,
        upstream=_upstream(upstream, "static", location),
    )
