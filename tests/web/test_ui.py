"""The UI in a real browser: Debian's Chromium driven by Playwright (nothing downloaded)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.web.conftest import UiServer

CHROMIUM = "/usr/bin/chromium"
PAGES = {
    "lineage": "/lineage",
    "runs": "/runs",
    "run": None,  # the newest run, found at run time
    "tables": "/tables",
    "table": "/tables/user_profile",
    "models": "/models",
    "model": "/models/churn",
    "compare": "/models/churn/compare?a=1&b=1",
    "monitors": "/monitors",
    "monitor": "/monitors/churn_drift",
    "performance": "/monitors/churn_performance",
    "schedules": "/schedules?table=user_profile",
    "sql": "/sql",
    "audit": "/audit",
}
XSS = "<img src=x onerror=window.__xss=1>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "apt-get install chromium (.ci/run does)"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Watched:
    """A page that records console errors, page errors and dialogs (an XSS would open one
    or set ``window.__xss``)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))

    def xss_ran(self) -> bool:
        return bool(self.page.evaluate("() => window.__xss === 1"))


def login(browser: Browser, server: UiServer, role: str) -> Watched:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = Watched(page)
    page.goto(server.url + "/runs")
    assert "/login" in page.url  # not logged in: sent to the login page, then back
    page.fill("input[name=key]", server.keys[role])
    page.click("button[type=submit]")
    page.wait_for_url("**/runs")
    return watched


def run_sql(page: Page, sql: str, chart: str = "none") -> None:
    page.evaluate("() => { document.querySelector('#result').replaceChildren() }")
    page.fill("textarea[name=sql]", sql)
    page.select_option("select[name=chart]", chart)
    page.click("#run-sql")
    page.wait_for_selector("#result > *")


def shots_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("GRISTMILL_SCREENSHOTS")
    return Path(wanted) if wanted else tmp_path


def test_every_page_loads_without_console_errors(
    browser: Browser, ui_server: UiServer, tmp_path: Path
) -> None:
    w = login(browser, ui_server, "admin")
    runs = httpx.get(ui_server.url + "/api/v1/runs", headers=ui_server.headers("admin")).json()
    shots = shots_dir(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES.items():
        path = path or f"/runs/{runs[-1]['run_id']}"
        response = w.page.goto(ui_server.url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        w.page.wait_for_load_state("networkidle")
        for drawn in w.page.query_selector_all(
            "[data-gm-lineage], [data-gm-gantt], [data-gm-chart]"
        ):
            assert drawn.get_attribute("data-ready") == "1" or drawn.query_selector(
                "[data-ready='1']"
            ), (path, drawn.get_attribute("id"))
        w.page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        assert w.errors == [], (path, w.errors)
    # the lineage holds the example's nodes, from sources to monitors
    graph = httpx.get(ui_server.url + "/api/v1/lineage", headers=ui_server.headers("viewer")).json()
    w.page.goto(ui_server.url + "/lineage")
    w.page.wait_for_selector("#lineage svg[data-ready='1']")
    assert w.page.get_attribute("#lineage svg", "data-nodes") == str(len(graph["nodes"]))
    text = w.page.inner_text("#lineage")
    for node in ("users", "transactions", "user_profile", "churn_training", "churn", "churn_drift"):
        assert node in text, node
    w.page.goto(ui_server.url + "/lineage?focus=churn_training&hops=1")
    w.page.wait_for_selector("#lineage svg[data-ready='1']")
    pruned = int(w.page.get_attribute("#lineage svg", "data-nodes") or 0)
    assert 2 < pruned < len(graph["nodes"])
    assert w.errors == []


def test_promote_is_refused_by_a_failing_gate_and_accepted_with_passing_ones(
    browser: Browser, ui_server: UiServer
) -> None:
    w = login(browser, ui_server, "engineer")
    w.page.goto(ui_server.url + "/models/churn_strict")
    assert "fail" in w.page.inner_text("#gates")
    w.page.fill("#promote input[name=reason]", "try")
    w.page.click("#promote button[type=submit]")
    assert "did not pass `roc_auc >= 0.99`" in w.page.inner_text("main")
    assert w.errors == [
        "Failed to load resource: the server responded with a status of 409 (Conflict)"
    ]
    w.errors.clear()  # the refusal's own status, as expected
    w.page.goto(ui_server.url + "/models/churn?version=1")
    assert w.page.query_selector("#promote input[name=force]") is None  # override: admin only
    w.page.fill("#promote input[name=alias]", "challenger")
    w.page.fill("#promote input[name=reason]", XSS)
    w.page.click("#promote button[type=submit]")
    w.page.wait_for_url("**/models/churn?version=1")
    events = w.page.inner_text("#events")
    key_id = ui_server.keys["engineer"].split("_")[1]
    assert XSS in events and f"key:{key_id}" in events  # escaped: shown as text
    w.page.goto(ui_server.url + "/audit")
    assert XSS in w.page.inner_text("main")
    assert not w.xss_ran() and w.errors == []
    # approve what a monitor left pending
    w.page.goto(ui_server.url + "/models/churn")
    assert "monitor:approval_drift" in w.page.inner_text("main")
    w.page.click("button.approve")
    w.page.wait_for_load_state("networkidle")
    # the retrain found nothing new to learn from: the version it left pending is v1
    assert w.page.url.endswith("/models/churn?version=1"), w.page.inner_text("main")
    assert w.page.query_selector("button.approve") is None
    aliases = httpx.get(ui_server.url + "/api/v1/models", headers=ui_server.headers("viewer"))
    churn = next(m for m in aliases.json() if m["name"] == "churn")
    assert churn["aliases"]["challenger"] == 1 and churn["aliases"]["candidate"] == 1


def test_the_sql_page_returns_rows_draws_a_chart_and_escapes_values(
    browser: Browser, ui_server: UiServer
) -> None:
    w = login(browser, ui_server, "analyst")
    w.page.goto(ui_server.url + "/sql")
    run_sql(w.page, "SELECT plan, count(*) AS n FROM user_profile GROUP BY plan ORDER BY 1", "bar")
    w.page.wait_for_selector("#result-chart[data-ready='1']")
    rows = w.page.query_selector_all("#result-table tbody tr")
    assert [r.query_selector("td").inner_text() for r in rows] == ["basic", "free", "premium"]  # type: ignore[union-attr]
    assert "read user_profile v" in w.page.inner_text("#result-meta")
    hostile = f"SELECT '{XSS}' AS \"{XSS}\" FROM user_profile LIMIT 1"
    run_sql(w.page, hostile)
    assert w.page.inner_text("#result-table tbody td") == XSS
    assert w.page.inner_text("#result-table thead th") == XSS
    run_sql(w.page, "DELETE FROM user_profile")
    assert "only SELECT queries" in w.page.inner_text("#result .error")
    with w.page.expect_download() as download:
        w.page.fill("textarea[name=sql]", "SELECT plan FROM user_profile ORDER BY plan LIMIT 2")
        w.page.click("button[value=csv]")
    assert Path(download.value.path()).read_text().splitlines()[0] == '"plan"'
    # htmx sends the session's token as a header: without the form's field, still accepted
    w.page.evaluate("() => document.querySelector('#sql-form input[name=csrf]').remove()")
    run_sql(w.page, "SELECT 1 AS one FROM user_profile LIMIT 1")
    assert w.page.inner_text("#result-table tbody td") == "1"
    assert not w.xss_ran() and w.errors == []


def test_a_viewer_sees_no_promote_button_and_is_refused(
    browser: Browser, ui_server: UiServer
) -> None:
    w = login(browser, ui_server, "viewer")
    w.page.goto(ui_server.url + "/models/churn")
    assert w.page.query_selector("#promote") is None
    csrf = w.page.get_attribute("meta[name=csrf-token]", "content") or ""
    api = w.page.request.post(
        ui_server.url + "/api/v1/models/churn/promote",
        data={"version": 1},
        headers={"x-csrf-token": csrf},
    )
    assert api.status == 403 and "may not promote models" in api.json()["message"]
    form = w.page.request.post(
        ui_server.url + "/act/promote", form={"csrf": csrf, "model": "churn", "version": "1"}
    )
    assert form.status == 403
    sql = w.page.goto(ui_server.url + "/sql")
    assert sql is not None and sql.status == 403  # a viewer runs no SQL
    bad = w.page.goto(ui_server.url + "/tables/user_profile?version=abc")
    assert (
        bad is not None
        and bad.status == 400
        and "not a version number" in w.page.inner_text("main")
    )
    w.errors = [e for e in w.errors if "403" not in e and "400" not in e]  # those refusals
    assert w.page.query_selector("nav a[href='/sql']") is None  # no link to what it may not use


def test_forms_without_the_csrf_token_are_refused_and_logout_ends_the_session(
    browser: Browser, ui_server: UiServer
) -> None:
    w = login(browser, ui_server, "admin")
    before = httpx.get(ui_server.url + "/api/v1/models", headers=ui_server.headers("admin")).json()
    for data in (
        {"model": "churn", "version": "1", "alias": "csrf"},
        {"csrf": "forged", "model": "churn", "version": "1", "alias": "csrf"},
    ):
        r = w.page.request.post(ui_server.url + "/act/promote", form=data)
        assert r.status == 403 and "CSRF token" in r.text()
    api = w.page.request.post(ui_server.url + "/api/v1/runs", data={"select": []})
    assert api.status == 403 and "CSRF" in api.json()["message"]
    after = httpx.get(ui_server.url + "/api/v1/models", headers=ui_server.headers("admin")).json()
    assert before == after
    cookie = next(c for c in w.page.context.cookies() if c["name"] == "gm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    w.page.goto(ui_server.url + "/models")
    w.page.click("nav form button")
    w.page.wait_for_url("**/login")
    w.page.goto(ui_server.url + "/models")
    assert "/login" in w.page.url
    forged = w.page.request.post(ui_server.url + "/login", form={"key": ui_server.keys["admin"]})
    assert forged.status == 403 and "posted from elsewhere" in forged.text()  # login CSRF
    w.page.goto(ui_server.url + "/login")
    w.page.fill("input[name=key]", "gm_nope_nope")
    with w.page.expect_response("**/login") as answer:
        w.page.click("button[type=submit]")
    assert answer.value.status == 401 and "unknown or revoked API key" in w.page.inner_text("main")
    w.errors = [e for e in w.errors if "401" not in e]  # the refusal's own status
    assert w.errors == []
