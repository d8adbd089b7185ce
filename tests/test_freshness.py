"""Freshness checks and schedule deadlines, driven by the scheduler in real processes: one
alert per stale version or late tick (a webhook POST), a refresh queued only when asked."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from gristmill.definitions.loader import load_project
from gristmill.errors import DefinitionError, GraphError
from gristmill.storage.catalog import schema as s
from gristmill.storage.catalog.records import utcnow
from gristmill.workspace import Workspace
from tests.conftest import BASIC_MODULE, Receiver, gm, gm_json, write_project

pytestmark = pytest.mark.slow

CHECKS = """
per_user_fresh = gm.freshness("per_user", max_age="1h", webhook="{hook}", refresh=True)
top_fresh = gm.freshness("top_users", max_age="1h", webhook="{hook}")
"""


def age(root: Path, table: str, hours: float) -> None:
    """As if ``table``'s versions had been built ``hours`` ago."""
    ws = Workspace.open(root)
    m = s.materializations
    with ws.catalog._write() as conn:
        conn.execute(
            update(m)
            .where(m.c.table_name == table)
            .values(finished_at=utcnow() - timedelta(hours=hours))
        )
    ws.close()


def test_a_stale_table_alerts_once_and_only_a_refresh_check_rebuilds(
    tmp_path: Path, receiver: str
) -> None:
    root = write_project(tmp_path / "p", module=BASIC_MODULE + CHECKS.format(hook=receiver))
    before = {c["name"]: c for c in gm_json(root, "freshness")}
    assert before["per_user_freshness"]["state"] == "never_built"
    assert before["per_user_freshness"]["webhook"] is True  # the URL itself is never shown
    assert receiver not in gm(root, "freshness", "--json").stdout
    assert gm(root, "run").returncode == 0
    fresh = {c["name"]: c for c in gm_json(root, "freshness")}
    assert {c["state"] for c in fresh.values()} == {"fresh"}
    assert fresh["per_user_freshness"]["version"] == 0 and fresh["per_user_freshness"]["age_s"] < 60

    age(root, "per_user", 2)
    age(root, "top_users", 2)
    tick = gm_json(root, "scheduler", "--once")
    alerts = {a["subject"]: a for a in tick["alerts"]}
    assert set(alerts) == {"per_user_freshness", "top_users_freshness"}
    assert (
        "per_user v0 is 2h old, more than its max_age of 1h"
        in alerts["per_user_freshness"]["message"]
    )
    assert alerts["per_user_freshness"]["delivered"] is True
    # the refresh: a forced build of +per_user, queued and run in the same tick
    [refresh] = tick["ran"]
    assert refresh["run_id"] == alerts["per_user_freshness"]["run_id"]
    assert (
        refresh["requested_by"] == "freshness:per_user_freshness" and refresh["status"] == "success"
    )
    assert "run_id" not in alerts["top_users_freshness"]  # alerting only: nothing queued
    posted = {b["freshness"]: b for b in Receiver.bodies}
    assert set(posted) == {"per_user_freshness", "top_users_freshness"}
    assert (
        posted["per_user_freshness"]["version"] == 0
        and posted["per_user_freshness"]["age_s"] > 7000
    )

    after = {c["name"]: c for c in gm_json(root, "freshness")}
    assert (
        after["per_user_freshness"]["state"] == "fresh"
        and after["per_user_freshness"]["version"] == 1
    )
    assert after["top_users_freshness"]["state"] == "stale"  # nobody refreshes it
    assert after["top_users_freshness"]["last_alert"]["message"].startswith("top_users v0 is")
    again = gm_json(root, "scheduler", "--once")
    assert again["alerts"] == [] and again["ran"] == []  # told once per stale version
    assert len(Receiver.bodies) == 2
    human = gm(root, "freshness")
    assert "top_users_freshness" in human.stdout and "stale" in human.stdout


DEADLINE = """
hourly = gm.schedule(
    "hourly", cron="0 * * * *", select="+per_user", deadline="1s", on_failure="{hook}",
)
"""


def test_a_run_late_for_its_deadline_alerts_once(tmp_path: Path, receiver: str) -> None:
    root = write_project(tmp_path / "p", module=BASIC_MODULE + DEADLINE.format(hook=receiver))
    assert gm(root, "run").returncode == 0
    gm_json(root, "scheduler", "--once")  # starts the schedule's clock now
    ws = Workspace.open(root)
    with ws.catalog._write() as conn:
        conn.execute(update(s.schedule_state).values(cursor=utcnow() - timedelta(minutes=61)))
    ws.close()
    tick = gm_json(root, "scheduler", "--once")
    [ran] = tick["ran"]
    [late] = tick["alerts"]
    assert late["kind"] == "deadline" and late["subject"] == "hourly"
    # the missed tick was past its deadline when the scheduler came back: late at once
    assert (
        "was not finished by its deadline" in late["message"] and "it is queued" in late["message"]
    )
    assert late["run_id"] == ran["run_id"]
    [posted] = Receiver.bodies
    assert posted["schedule"] == "hourly" and posted["run_id"] == ran["run_id"]
    assert gm_json(root, "scheduler", "--once")["alerts"] == []


def test_a_refresh_of_a_stale_source_ingests_its_files_again(tmp_path: Path) -> None:
    module = BASIC_MODULE + 'fresh = gm.freshness("txns", max_age="1h", refresh=True)\n'
    root = write_project(tmp_path / "p", module=module)
    assert gm(root, "run").returncode == 0
    age(root, "txns", 2)
    tick = gm_json(root, "scheduler", "--once")
    [alert] = tick["alerts"]
    [refresh] = tick["ran"]
    assert refresh["run_id"] == alert["run_id"] and refresh["status"] == "success"
    assert {c["name"]: c["state"] for c in gm_json(root, "freshness")} == {
        "txns_freshness": "fresh"
    }


def test_webhook_urls_are_shown_without_their_secrets() -> None:
    from gristmill.definitions.urls import redact

    shown = redact("https://user:PASSWORD@hooks.example:8443/p/TOKEN?key=SECRET")
    assert shown == "https://hooks.example:8443/…"
    assert redact("http://[::1") == "<a URL that does not parse>"


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        ('gm.freshness("nope", max_age="1h")', GraphError, "watches 'nope'"),
        ('gm.freshness("per_user", max_age="soon")', DefinitionError, "soon"),
        (
            'gm.freshness("per_user", max_age="1h", webhook="ftp://u:SECRET@x/?t=SECRET")',
            DefinitionError,
            "must start with http:// or https://, not ftp",
        ),
        ('gm.freshness("per_user", max_age="1h", refresh="yes")', DefinitionError, "True or False"),
        ('gm.schedule("s", cron="0 * * * *", deadline="-1h")', DefinitionError, "deadline"),
    ],
)
def test_bad_freshness_and_deadlines_are_load_errors(
    tmp_path: Path, line: str, error: type[Exception], message: str
) -> None:
    root = write_project(tmp_path / "p", module=BASIC_MODULE + "\nbad = " + line + "\n")
    with pytest.raises(error) as caught:
        load_project(root)
    assert message in str(caught.value) and "SECRET" not in str(caught.value)
    assert caught.value.location is not None
