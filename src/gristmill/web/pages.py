"""The UI's pages: server-rendered (Jinja2, autoescaped), htmx for the SQL page, the
vendored dagre and uPlot for graphs and charts. Each page gathers its data from the same
service methods as the API, acting as the session's principal; forms carry the
session's CSRF token and answer with a redirect (post/redirect/get)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gristmill.access import Action
from gristmill.errors import GristmillError, InvalidInputError, NotFoundError, Unauthorized
from gristmill.planning import Backfill
from gristmill.web.edge import COOKIE, CSRF_FIELD, Web, error_body, incident
from gristmill.workspace.auth import Session
from gristmill.workspace.core import Workspace
from gristmill.workspace.query import parse_time
from gristmill.workspace.reports import bin_labels
from gristmill.workspace.shapes import to_jsonable

TEMPLATES = Path(__file__).parent / "templates"
NAV = [
    ("lineage", "/lineage", Action.READ),
    ("runs", "/runs", Action.READ),
    ("tables", "/tables", Action.READ),
    ("models", "/models", Action.READ),
    ("monitors", "/monitors", Action.READ),
    ("schedules", "/schedules", Action.READ),
    ("sql", "/sql", Action.QUERY),
    ("audit", "/audit", Action.READ),
]
"""The pages, each shown to the roles that may take its action."""
LOGIN_COOKIE = "gm_login"
SHOWN = 25
"""Versions a model's page lists unless asked for all (the API lists every one)."""
Gather = Callable[[Workspace, Request], dict[str, Any]]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["json"] = _json_script
    env.filters["when"] = _when
    env.filters["num"] = _num
    env.globals["nav"] = NAV
    return env


def _json_script(value: Any) -> Markup:
    """Data for a ``<script type="application/json">``: ``<``, ``>`` and ``&`` escaped so
    that no value can close the script element."""
    import orjson

    text = orjson.dumps(to_jsonable(value), option=orjson.OPT_NON_STR_KEYS).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script context


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value[:19].replace("T", " ")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


class Pages:
    def __init__(self, web: Web) -> None:
        self.web = web
        self.env = environment()

    def render(self, template: str, code: int = 200, /, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, code)

    def page(self, template: str, gather: Gather) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.web.session(request)
            if session is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", 303)
            clock = time.perf_counter()
            try:
                data = await self.web.call(session.principal, gather, self.web.ws, request)
                response = self.render(template, session=session, path=request.url.path, **data)
            except GristmillError as exc:
                return self.error(request, session, exc)
            except Exception:
                return self.bug(request, session)
            response.headers["server-timing"] = (
                f"app;dur={(time.perf_counter() - clock) * 1000:.1f}"
            )
            return response

        return endpoint

    def form(
        self, act: Callable[[Workspace, dict[str, str]], str]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A form post: session and CSRF checked, ``act`` runs as the principal and returns
        where to go next; an error renders the error page with its status."""

        async def endpoint(request: Request) -> Response:
            session = self.web.session(request)
            try:
                session, fields = await self.posted(request, session)
                target = await self.web.call(session.principal, act, self.web.ws, fields)
            except GristmillError as exc:
                return self.error(request, session, exc)
            except Exception:
                return self.bug(request, session)
            if request.headers.get("hx-request"):
                response: Response = Response(status_code=204, headers={"hx-redirect": target})
                return response
            return RedirectResponse(target, 303)

        return endpoint

    async def posted(
        self, request: Request, session: Session | None
    ) -> tuple[Session, dict[str, str]]:
        """A logged-in post's session and fields, its CSRF token checked (the form's field
        or htmx's header)."""
        if session is None:
            raise Unauthorized("not logged in", hint="log in at /login")
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        self.web.check_csrf(session, fields.get(CSRF_FIELD) or request.headers.get("x-csrf-token"))
        return session, fields

    def bug(self, request: Request, session: Session | None) -> HTMLResponse:
        """Not the user's doing: the traceback goes to the log under an id, the page says
        only the id."""
        _, body = incident(request)
        return self.render("error.html", 500, session=session, path=request.url.path, error=body)

    def error(self, request: Request, session: Session | None, exc: GristmillError) -> HTMLResponse:
        status, body = error_body(exc)
        return self.render("error.html", status, session=session, path=request.url.path, error=body)

    # ---- login -------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        next_ = _safe_next(request.query_params.get("next"))
        return self._login_form(next_, None, 200)

    def _login_form(self, next_: str, error: dict[str, Any] | None, code: int) -> Response:
        """The form with a fresh login token, also set as a SameSite=Strict cookie: a page
        elsewhere cannot post a login (and so cannot log anyone into its own session)."""
        token = secrets.token_urlsafe(16)
        response = self.render(
            "login.html", code, session=None, path="/login", next=next_, error=error, token=token
        )
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=3600,
            httponly=True,
            samesite="strict",
            secure=self.web.secure_cookies,
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("key", ""))
        next_ = _safe_next(str(form.get("next", "/")))
        given, expected = str(form.get("login_token", "")), request.cookies.get(LOGIN_COOKIE)
        if not expected or not secrets.compare_digest(given, expected):
            error = {
                "message": "the login form is stale or was posted from elsewhere",
                "hint": "open /login and log in again",
                "status": 403,
            }
            return self._login_form(next_, error, 403)
        try:
            cookie, session = self.web.sessions.open(token)
        except GristmillError as exc:
            status, body = error_body(exc)
            return self._login_form(next_, body, status)
        response = RedirectResponse(next_, 303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(session.expires - time.time()),
            httponly=True,
            samesite="strict",
            secure=self.web.secure_cookies,
        )
        return response

    async def logout(self, request: Request) -> Response:
        session = self.web.session(request)
        form = await request.form()
        if session is not None:
            try:
                self.web.check_csrf(session, str(form.get(CSRF_FIELD, "")))
            except GristmillError as exc:
                return self.error(request, session, exc)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        return response

    def guarded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A handler whose own errors it answers itself; anything else is a bug (the bug
        page, never a bare 500), and the answer carries the server's time."""

        async def endpoint(request: Request) -> Response:
            clock = time.perf_counter()
            try:
                response = await handler(request)
            except GristmillError as exc:
                response = self.error(request, self.web.session(request), exc)
            except Exception:
                response = self.bug(request, self.web.session(request))
            response.headers["server-timing"] = (
                f"app;dur={(time.perf_counter() - clock) * 1000:.1f}"
            )
            return response

        return endpoint

    def routes(self) -> list[Route]:
        p = self.page
        return [
            Route("/", lambda r: RedirectResponse("/lineage", 303)),
            Route("/login", self.guarded(self.login_page), methods=["GET"]),
            Route("/login", self.guarded(self.login), methods=["POST"]),
            Route("/logout", self.guarded(self.logout), methods=["POST"]),
            Route("/lineage", p("lineage.html", lineage)),
            Route("/runs", p("runs.html", runs)),
            Route("/runs/{id}", p("run.html", run)),
            Route("/tables", p("tables.html", tables)),
            Route("/tables/{name}", p("table.html", table)),
            Route("/models", p("models.html", models)),
            Route("/models/{name}", p("model.html", model)),
            Route("/models/{name}/compare", p("compare.html", compare)),
            Route("/monitors", p("monitors.html", monitors)),
            Route("/monitors/{name}", p("monitor.html", monitor)),
            Route("/schedules", p("schedules.html", schedules)),
            Route("/sql", p("sql.html", sql_page)),
            Route("/sql/run", self.guarded(self.sql_run), methods=["POST"]),
            Route("/sql/download", self.guarded(self.sql_download), methods=["POST"]),
            Route("/audit", p("audit.html", audit)),
            Route("/act/run", self.form(trigger), methods=["POST"]),
            Route("/act/cancel", self.form(cancel), methods=["POST"]),
            Route("/act/promote", self.form(promote), methods=["POST"]),
            Route("/act/backfill", self.form(backfill), methods=["POST"]),
            Route("/act/save-query", self.form(save_query), methods=["POST"]),
        ]

    # ---- the SQL page's htmx parts -----------------------------------------------------

    async def sql_run(self, request: Request) -> Response:
        session = self.web.session(request)
        try:
            session, fields = await self.posted(request, session)
            sql, as_of = fields.get("sql", ""), parse_time(fields.get("as_of") or None)
            result = await self.web.call(
                session.principal, lambda ws: ws.queries.run(sql, as_of=as_of), self.web.ws
            )
        except GristmillError as exc:
            status, body = error_body(exc)
            return self.render("sql_result.html", 200, result=None, error=body, chart=None)
        chart = _chart_of(result.columns, result.rows, fields.get("chart", "none"))
        return self.render("sql_result.html", result=result, error=None, chart=chart)

    async def sql_download(self, request: Request) -> Response:
        session = self.web.session(request)
        try:
            session, fields = await self.posted(request, session)
            sql, fmt = fields.get("sql", ""), fields.get("format", "csv")
            as_of = parse_time(fields.get("as_of") or None)
            data, media = await self.web.call(
                session.principal,
                lambda ws: ws.queries.download(sql, format=fmt, as_of=as_of),
                self.web.ws,
            )
        except GristmillError as exc:
            return self.error(request, session, exc)
        name = "query.csv" if fmt == "csv" else "query.parquet"
        return Response(
            data,
            media_type=media,
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )


def _int_param(r: Request, name: str) -> int | None:
    """A whole-number query parameter; anything else is a clear error, never ignored."""
    raw = r.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidInputError(f"?{name}= is {raw[:20]!r}, not a version number")
    return int(raw)


def _safe_next(value: str | None) -> str:
    """Only a path of this site (no scheme, no host, no ``//``) may follow a login."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _chart_of(
    columns: list[dict[str, str]], rows: list[list[Any]], kind: str
) -> dict[str, Any] | None:
    """A line or bar chart of a result: the first column on x, numeric columns as series."""
    if kind not in ("line", "bar") or not rows or len(columns) < 2:
        return None
    numeric = [
        i
        for i, c in enumerate(columns[1:], 1)
        if all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
    ]
    if not numeric:
        return None
    xs = [r[0] for r in rows]
    time_x = all(isinstance(x, datetime) for x in xs)
    if not time_x and not all(isinstance(x, (int, float)) for x in xs):
        xs = list(range(len(rows)))
    series = [{"label": columns[i]["name"], "values": [r[i] for r in rows]} for i in numeric]
    return {
        "kind": kind,
        "x": xs,
        "xTime": time_x,
        "series": series,
        "labels": [str(r[0]) for r in rows],
    }


# ---- what each page shows (run as the session's principal) --------------------------------


def lineage(ws: Workspace, r: Request) -> dict[str, Any]:
    focus = r.query_params.get("focus") or None
    hops_raw = r.query_params.get("hops") or "2"
    if not hops_raw.isdigit() or int(hops_raw) > 50:
        raise InvalidInputError(f"hops {hops_raw[:20]!r} is not a number of hops (0..50)")
    graph = ws.project_graph(focus, int(hops_raw) if focus else None)
    return {"graph": graph, "focus": focus, "hops": int(hops_raw)}


def runs(ws: Workspace, r: Request) -> dict[str, Any]:
    status = r.query_params.get("status") or None
    kind = r.query_params.get("kind") or None
    from gristmill.storage.catalog.runs import KINDS, STATUSES

    return {
        "runs": ws.runs(200, status=status, kind=kind),
        "status": status,
        "kind": kind,
        "statuses": STATUSES,
        "kinds": KINDS,
        "can_run": ws.principal.may(Action.RUN),
    }


def run(ws: Workspace, r: Request) -> dict[str, Any]:
    info = ws.run_info(r.path_params["id"])
    try:
        log = ws.run_log(info.run_id)
    except NotFoundError:  # a run of `gristmill run` in a terminal keeps no log
        log = None
    gantt = [
        {
            "name": s["table"],
            "start": s["started_at"],
            "end": s["finished_at"],
            "status": s["status"],
        }
        for s in info.steps
        if s["started_at"] is not None
    ]
    return {"run": info, "log": log, "gantt": gantt, "can_run": ws.principal.may(Action.RUN)}


def tables(ws: Workspace, r: Request) -> dict[str, Any]:
    return {"status": ws.status(), "sources": ws.sources()}


def table(ws: Workspace, r: Request) -> dict[str, Any]:
    name = r.path_params["name"]
    info = ws.table(name)
    history = ws.history(name) if info.version is not None else []
    version = _int_param(r, "version")
    sample = quarantine = None
    if history:
        sample = ws.sample(name, version, limit=20)
        if sample.quarantined:
            quarantine = ws.sample(name, version, limit=20, quarantined=True)
    chart = {
        "kind": "bar",
        "x": [v.version for v in history],
        "xTime": False,
        "series": [
            {"label": "rows added", "values": [v.rows_added for v in history]},
            {"label": "quarantined", "values": [v.quarantined for v in history]},
        ],
    }
    return {
        "table": info,
        "history": list(reversed(history)),
        "sample": sample,
        "quarantine": quarantine,
        "chart": chart if history else None,
    }


def models(ws: Workspace, r: Request) -> dict[str, Any]:
    return {"models": ws.models.list()}


def model(ws: Workspace, r: Request) -> dict[str, Any]:
    name = r.path_params["name"]
    summary = ws.models.summary(name)
    versions = ws.models.versions(name) if summary.latest else []
    ref = _int_param(r, "version")
    chosen = versions[-1] if versions else None
    if ref is not None:
        chosen = ws.models.show(name, ref)  # an unknown version: its error, not the latest
    gates = ws.models.gate_results(name, chosen.version) if chosen else []
    return {
        "model": summary,
        "versions": list(reversed(versions))[: None if r.query_params.get("all") else SHOWN],
        "hidden": 0 if r.query_params.get("all") else max(0, len(versions) - SHOWN),
        "chosen": chosen,
        "gates": gates,
        "events": list(reversed(ws.models.events(name))),
        "pending": ws.models.pending(name),
        "can_promote": ws.principal.may(Action.PROMOTE),
        "can_override": ws.principal.may(Action.OVERRIDE),
        "card": ws.models.card(name, chosen.version) if chosen else "",
    }


def compare(ws: Workspace, r: Request) -> dict[str, Any]:
    name = r.path_params["name"]
    a, b = r.query_params.get("a", ""), r.query_params.get("b", "")
    return {"name": name, "cmp": ws.models.compare(name, a, b)}


def monitors(ws: Workspace, r: Request) -> dict[str, Any]:
    return {"monitors": ws.monitors.status(), "alerts": list(reversed(ws.monitors.alerts()))[:50]}


def monitor(ws: Workspace, r: Request) -> dict[str, Any]:
    name = r.path_params["name"]
    spec = ws.monitors.spec(name)
    results = [x for x in ws.monitors.results(name) if x.subject != "evaluation"]
    times = sorted({x.evaluated_at for x in results})
    series: dict[tuple[str, str], list[Any]] = {}
    for x in results:
        series.setdefault((x.subject, x.statistic), []).append(x)
    charts = []
    for (subject, statistic), points in sorted(series.items()):
        at = {p.evaluated_at: p for p in points}
        chart: dict[str, Any] = {
            "kind": "line",
            "x": times,
            "xTime": True,
            "series": [
                {"label": f"{subject} {statistic}", "values": [_value(at.get(t)) for t in times]}
            ],
        }
        low = [_detail(at.get(t), "low") for t in times]
        high = [_detail(at.get(t), "high") for t in times]
        if any(v is not None for v in low + high):  # performance: its confidence band
            chart["band"] = {"lower": low, "upper": high, "label": "95% interval"}
        if points[-1].threshold is not None:
            chart["series"].append(
                {"label": "threshold", "values": [points[-1].threshold] * len(times)}
            )
        charts.append({"title": f"{subject} · {statistic}", "chart": chart})
    last_id = results[-1].evaluation_id if results else None
    latest = [x for x in results if x.evaluation_id == last_id]
    return {
        "spec": spec,
        "latest": latest,
        "charts": charts[:40],
        "distributions": [d for d in map(_distribution, latest) if d][:24],
        "alerts": list(reversed(ws.monitors.alerts(name))),
    }


def _value(point: Any) -> float | None:
    return None if point is None else point.value


def _detail(point: Any, key: str) -> float | None:
    return None if point is None or not point.details else point.details.get(key)


def _distribution(point: Any) -> dict[str, Any] | None:
    """Reference vs current shares of a feature (what its drift statistic compared)."""
    chart = (point.details or {}).get("chart")
    if not chart:
        return None
    labels = bin_labels(chart)
    return {
        "title": f"{point.subject} ({point.statistic} {_num(point.value)})",
        "chart": {
            "kind": "bar",
            "x": list(range(len(labels))),
            "labels": labels,
            "xTime": False,
            "series": [
                {"label": "reference", "values": chart["reference"]},
                {"label": "current", "values": chart["current"]},
            ],
        },
    }


def schedules(ws: Workspace, r: Request) -> dict[str, Any]:
    plan = None
    table_name = r.query_params.get("table")
    if table_name:
        backfill = Backfill(
            table_name, r.query_params.get("first") or None, r.query_params.get("last") or None
        )
        plan = ws.plan(backfill=backfill)
    partitioned = [
        n for n in ws.graph.order if getattr(ws.graph.nodes[n], "partitions", None) is not None
    ]
    return {
        "schedules": ws.scheduler.schedules(),
        "sensors": ws.scheduler.sensors(),
        "plan": plan,
        "query": dict(r.query_params),
        "partitioned": partitioned,
        "can_run": ws.principal.may(Action.RUN),
    }


def sql_page(ws: Workspace, r: Request) -> dict[str, Any]:
    saved = ws.queries.saved()
    chosen = next((q for q in saved if q.name == r.query_params.get("saved")), None)
    first = next(iter(ws.queries.pins()), "")
    sql = (
        chosen.sql
        if chosen
        else (f"SELECT * FROM {first} LIMIT 100" if first else "SELECT 1 AS one")
    )
    return {
        "saved": saved,
        "sql": sql,
        "tables": ws.queries.pins(),
        "as_of": (chosen.pins.get("as_of", "") if chosen else ""),
    }


def audit(ws: Workspace, r: Request) -> dict[str, Any]:
    return {"events": ws.audit(500)}


# ---- what each form does --------------------------------------------------------------


def trigger(ws: Workspace, f: dict[str, str]) -> str:
    select = [s for s in f.get("select", "").split() if s]
    info = ws.enqueue(select, full_refresh=f.get("full_refresh") == "on")
    return f"/runs/{info.run_id}"


def cancel(ws: Workspace, f: dict[str, str]) -> str:
    info = ws.cancel(f.get("run_id", ""))
    return f"/runs/{info.run_id}"


def promote(ws: Workspace, f: dict[str, str]) -> str:
    name, version = f.get("model", ""), f.get("version", "")
    if not version.isdigit():
        raise InvalidInputError(f"version {version[:20]!r} is not a version number")
    ws.models.promote(
        name,
        int(version),
        alias=f.get("alias") or "champion",
        reason=f.get("reason", ""),
        force=f.get("force") == "on",
    )
    return f"/models/{quote(name)}?version={version}"


def backfill(ws: Workspace, f: dict[str, str]) -> str:
    info = ws.enqueue_backfill(
        Backfill(f.get("table", ""), f.get("first") or None, f.get("last") or None)
    )
    return f"/runs/{info.run_id}"


def save_query(ws: Workspace, f: dict[str, str]) -> str:
    saved = ws.queries.save(
        f.get("name", ""), f.get("sql", ""), as_of=parse_time(f.get("as_of") or None)
    )
    return "/sql?" + urlencode({"saved": saved.name})
