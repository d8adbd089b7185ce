"""Schedules: load-time errors with file and line, ticks across daylight-saving changes,
and the catch-up decision for ticks the scheduler missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import gristmill as gm
from gristmill.definitions.loader import load_project
from gristmill.errors import DefinitionError, GraphError
from gristmill.planning.schedules import decide_ticks
from tests.conftest import BASIC_MODULE, write_project


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        ("Europe/Berlin", (2026, 3, 29), (2026, 10, 25)),
        ("America/New_York", (2026, 3, 8), (2026, 11, 1)),
    ],
)
def test_a_daily_run_happens_once_on_both_transition_days(
    zone: str, spring: tuple[int, int, int], autumn: tuple[int, int, int]
) -> None:
    nightly = gm.schedule("nightly", cron="30 2 * * *", timezone=zone)
    local = ZoneInfo(zone)
    for day in (spring, autumn):
        start = datetime(*day, tzinfo=local) - timedelta(days=1)
        ticks = list(
            nightly.ticks(start.astimezone(UTC), (start + timedelta(days=3)).astimezone(UTC))
        )
        dates = [t.astimezone(local).date() for t in ticks]
        assert len(dates) == len(set(dates)) == 3  # one tick per local day, none twice
        on_the_day = [
            t.astimezone(local)
            for t in ticks
            if t.astimezone(local).date() == datetime(*day).date()
        ]
        assert len(on_the_day) == 1
        if day == spring:  # 02:30 does not exist: right after the change, as cron does
            assert (on_the_day[0].hour, on_the_day[0].minute) == (3, 0)
        else:  # 02:30 happens twice: the first one only
            assert (on_the_day[0].hour, on_the_day[0].minute) == (2, 30)
            assert on_the_day[0].fold == 0
        assert all(t.tzinfo is UTC for t in ticks)


def test_an_hourly_run_follows_real_hours_across_the_change() -> None:
    hourly = gm.schedule("hourly", cron="15 * * * *", timezone="Europe/Berlin")
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    ticks = list(hourly.ticks(start, start + timedelta(hours=6)))
    gaps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
    assert gaps == {timedelta(hours=1)} and len(ticks) == 6


NOW = datetime(2026, 11, 30, 12, 0, 20, tzinfo=UTC)


def decide(catchup: str, cursor: datetime | None, window: str = "3d") -> list[tuple[str, bool]]:
    every_hour = gm.schedule("h", cron="0 * * * *", catchup=catchup, catchup_window=window)
    return [(d.at.strftime("%d %H:%M"), d.run) for d in decide_ticks(every_hour, cursor, NOW)]


def test_catch_up_latest_all_skip_and_the_window() -> None:
    three_hours_ago = NOW - timedelta(hours=3)
    assert decide("latest", three_hours_ago) == [
        ("30 10:00", False),
        ("30 11:00", False),
        ("30 12:00", True),  # 20 s ago: on time, and the newest
    ]
    assert decide("all", three_hours_ago) == [
        ("30 10:00", True),
        ("30 11:00", True),
        ("30 12:00", True),
    ]
    assert decide("skip", three_hours_ago) == [
        ("30 10:00", False),
        ("30 11:00", False),
        ("30 12:00", True),
    ]
    late = NOW + timedelta(minutes=30)  # the newest tick is late too
    every_hour = gm.schedule("h", cron="0 * * * *", catchup="skip")
    assert not any(d.run for d in decide_ticks(every_hour, three_hours_ago, late))
    latest = gm.schedule("h", cron="0 * * * *")
    decided = decide_ticks(latest, three_hours_ago, late)
    assert [d.run for d in decided] == [False, False, True]
    assert decided[-1].reason == "missed by 30m20s, the newest runs (catchup latest)"
    # older than the window: passed over, not even decided
    assert decide("all", NOW - timedelta(days=30), window="2h") == [
        ("30 11:00", True),
        ("30 12:00", True),
    ]
    assert decide("all", None) == []  # a new schedule starts now, not in its past
    assert decide("all", NOW) == []


def module_with(line: str) -> str:
    return BASIC_MODULE + "\n" + line + "\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('gm.schedule("s", cron="30 2 * *")', "it needs 5 fields"),
        ('gm.schedule("s", cron="61 2 * * *")', "cannot read the cron expression '61 2 * * *'"),
        ('gm.schedule("s", cron="0 0 30 2 *")', "Bad day-of-month"),
        ('gm.schedule("s", cron="* * */20 * 1L")', "never fires"),
        ('gm.schedule("s", cron="0 2 * * *", timezone="Mars/Olympus")', "unknown time zone"),
        ('gm.schedule("s", cron="0 2 * * *", timezone="../etc/passwd")', "unknown time zone"),
        ('gm.schedule("s", cron="0 2 * * *", catchup="some")', "unknown catchup 'some'"),
        ('gm.schedule("s", cron="0 2 * * *", catchup_window="3 days")', "cannot read the duration"),
        ('gm.schedule("s", cron="0 2 * * *", timeout="0s")', "timeout must be positive"),
        ('gm.schedule("s", cron="0 2 * * *", catchup_window="30s")', "shorter than a minute"),
        ('gm.schedule("s", cron="0 2 * * *", retries=3)', "retries must be gm.retry"),
        ('gm.schedule("s", cron="0 2 * * *", retries=gm.retry(0))', "from 1 to 100"),
        (
            'gm.schedule("s", cron="0 2 * * *", retries=gm.retry(2, backoff="linear"))',
            "unknown backoff",
        ),
        ('gm.schedule("s", cron="0 2 * * *", on_failure="ftp://x")', "must start with http://"),
        ('gm.schedule("s", cron="0 2 * * *", on_failure="http://")', "names no host"),
        ('gm.schedule("s", cron="0 2 * * *", deadline="1h")', "a deadline needs on_failure="),
        ('gm.schedule("bad name", cron="0 2 * * *")', "invalid name"),
        ('gm.schedule(None, cron="0 2 * * *")', "invalid name None"),
        ('gm.schedule("s", cron="0 2 * * *", timeout=30)', "a duration is text or a timedelta"),
        ('gm.schedule("s", cron="0 2 * * *", select=42)', "select is names as text"),
        ('gm.sensor("s", on=gm.new_files("txns"), select=[1])', "select is names as text"),
    ],
)
def test_a_bad_schedule_is_a_load_error_with_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    root = write_project(tmp_path, module=module_with("nightly = " + line))
    with pytest.raises(DefinitionError) as caught:
        load_project(root)
    assert message in caught.value.message
    assert caught.value.location is not None
    assert caught.value.location.path.name == "pipeline.py"
    lines = (root / "pipeline.py").read_text().splitlines()
    assert lines[caught.value.location.line - 1].startswith("nightly = ")


def test_a_schedule_selecting_nothing_known_is_a_load_error(tmp_path: Path) -> None:
    root = write_project(
        tmp_path, module=module_with('n = gm.schedule("n", cron="0 2 * * *", select="+nope")')
    )
    with pytest.raises(GraphError, match="schedule 'n'") as caught:
        load_project(root)
    assert "nope" in caught.value.message and caught.value.location.line is not None


def test_a_schedule_loads_with_its_project(tmp_path: Path) -> None:
    line = (
        'n = gm.schedule("nightly", cron="30  2 * * *", timezone="Europe/Berlin", '
        'select="+per_user, top_users", retries=gm.retry(3, base="10s"), timeout="2h")'
    )
    project = load_project(write_project(tmp_path, module=module_with(line)))
    nightly = project.schedules["nightly"]
    assert nightly.cron == "30 2 * * *" and nightly.select == ("+per_user", "top_users")
    assert nightly.timeout == timedelta(hours=2) and nightly.catchup.value == "latest"
    assert nightly.retries is not None
    assert [nightly.retries.delay(n) for n in (1, 2, 3)] == [
        timedelta(seconds=10),
        timedelta(seconds=20),
        timedelta(seconds=40),
    ]
