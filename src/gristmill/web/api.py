"""The REST API, ``/api/v1/…``: one route table over the service layer, and its OpenAPI
document made from the same table.

Each route names its parameters (typed, bounded), its body (a closed pydantic model) and
a handler of one or two lines that calls the service layer; what a caller may do is
decided there, by ``authorize``. The ``Action`` of each route is for the document and
the published table of roles (docs/access.md), not a second check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gristmill import __version__
from gristmill.access import PERMISSIONS, Action
from gristmill.errors import BadRequest, GristmillError, InvalidInputError
from gristmill.planning import Backfill
from gristmill.web.edge import Web, error_body, incident
from gristmill.workspace.core import Workspace
from gristmill.workspace.query import parse_time
from gristmill.workspace.shapes import to_jsonable

PREFIX = "/api/v1"
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
"""HTML the API sends (reports, cards) is self-contained: no script may run in it."""


class Html(str):
    """A handler's answer that is an HTML page (a card asked for as HTML)."""


Args = dict[str, Any]


@dataclass(frozen=True)
class Param:
    name: str
    kind: Literal["string", "integer", "boolean"] = "string"
    where: Literal["path", "query"] = "query"
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] = ()
    default: Any = None
    description: str = ""

    def parse(self, raw: str | None) -> Any:
        if raw is None:
            if self.required:
                raise InvalidInputError(f"query parameter {self.name!r} is required")
            return self.default
        if len(raw) > 2000:
            raise InvalidInputError(f"parameter {self.name!r} is over 2000 characters")
        if self.kind == "integer":
            try:
                value: Any = int(raw)
            except ValueError:
                raise InvalidInputError(
                    f"parameter {self.name!r} is {raw[:40]!r}, not a whole number"
                ) from None
            low = self.minimum if self.minimum is not None else -(2**31)
            high = self.maximum if self.maximum is not None else 2**31
            if not low <= value <= high:
                raise InvalidInputError(f"parameter {self.name!r} must be in {low}..{high}")
            return value
        if self.kind == "boolean":
            if raw not in ("true", "false"):
                raise InvalidInputError(f"parameter {self.name!r} is true or false")
            return raw == "true"
        if "\x00" in raw:
            raise InvalidInputError(f"parameter {self.name!r} holds a NUL character")
        if self.enum and raw not in self.enum:
            raise InvalidInputError(
                f"parameter {self.name!r} is {raw[:40]!r}", hint=f"one of: {', '.join(self.enum)}"
            )
        return raw

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "string":
            out["maxLength"] = 2000
            out["pattern"] = "^[^\\x00]*$"
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.enum:
            out["enum"] = list(self.enum)
        return out


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    action: Action
    summary: str
    handler: Callable[[Workspace, Args], Any]
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    returns: Literal["json", "text", "html"] = "json"
    tag: str = ""
    statuses: tuple[int, ...] = field(default=(400, 401, 403, 404, 409, 422))
    html_too: bool = False
    """A ``text`` route that answers HTML when asked (``Html``)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]


class TriggerBody(_Body):
    select: list[Name] = Field(default_factory=list, max_length=100)
    """Tables to build with their upstream (``+name``) or as given; empty: everything."""
    full_refresh: bool = False
    force: list[Name] = Field(default_factory=list, max_length=100)


class PromoteBody(_Body):
    version: Annotated[int, Field(ge=1, le=2**31)]
    alias: Name = "champion"
    reason: Annotated[str, Field(max_length=2000, pattern=r"^[^\x00]*$")] = ""
    force: bool = False


class RollbackBody(_Body):
    alias: Name = "champion"
    reason: Annotated[str, Field(max_length=2000, pattern=r"^[^\x00]*$")] = ""


class BackfillBody(_Body):
    table: Name
    first: Name | None = None
    last: Name | None = None
    force: bool = False


class QueryBody(_Body):
    sql: Annotated[str, Field(min_length=1, max_length=100_000, pattern=r"^[^\x00]*$")]
    versions: dict[Name, Annotated[int, Field(ge=0, le=2**31)]] = Field(default_factory=dict)
    as_of: Annotated[str, Field(max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class SaveQueryBody(QueryBody):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]


NAME = Param("name", where="path", required=True, description="A table, model or monitor.")
LIMIT = Param("limit", "integer", minimum=1, maximum=10_000, default=50)
VERSION = Param("version", "integer", minimum=0, maximum=2**31)


def _trigger(ws: Workspace, a: Args) -> Any:
    b: TriggerBody = a["body"]
    return ws.enqueue(b.select, full_refresh=b.full_refresh, force=b.force)


def _backfill(ws: Workspace, a: Args) -> Any:
    b: BackfillBody = a["body"]
    return ws.enqueue_backfill(Backfill(b.table, b.first, b.last, b.force))


def _backfill_plan(ws: Workspace, a: Args) -> Any:
    b: BackfillBody = a["body"]
    return ws.plan(backfill=Backfill(b.table, b.first, b.last, b.force))


def _promote(ws: Workspace, a: Args) -> Any:
    b: PromoteBody = a["body"]
    return ws.models.promote(a["name"], b.version, alias=b.alias, reason=b.reason, force=b.force)


def _query(ws: Workspace, a: Args) -> Any:
    b: QueryBody = a["body"]
    return ws.queries.run(b.sql, versions=b.versions, as_of=parse_time(b.as_of), limit=b.limit)


def _save(ws: Workspace, a: Args) -> Any:
    b: SaveQueryBody = a["body"]
    return ws.queries.save(b.name, b.sql, versions=b.versions, as_of=parse_time(b.as_of))


def _sample(ws: Workspace, a: Args, quarantined: bool = False) -> Any:
    return ws.sample(a["name"], a["version"], limit=a["limit"], quarantined=quarantined).to_dict()


def _compare(ws: Workspace, a: Args) -> Any:
    return ws.models.compare(a["name"], a["a"], a["b"])


def _card(ws: Workspace, a: Args) -> Any:
    card = ws.models.card(a["name"], a["ref"], format=a["format"])
    return Html(card) if a["format"] == "html" else card


def _me(ws: Workspace, a: Args) -> Any:
    return ws.principal.to_dict()


ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute(
        "GET", "/me", Action.OPENAPI, "Who the key acts as and what it may do", _me, tag="access"
    ),
    ApiRoute(
        "GET",
        "/tables",
        Action.READ,
        "Every table and source, latest version",
        lambda ws, a: ws.tables(),
        tag="tables",
    ),
    ApiRoute(
        "GET",
        "/status",
        Action.READ,
        "Fresh, stale or never built, per table",
        lambda ws, a: ws.status(),
        tag="tables",
    ),
    ApiRoute(
        "GET",
        "/tables/{name}",
        Action.READ,
        "One table: schema, inputs, latest version",
        lambda ws, a: ws.table(a["name"]),
        (NAME,),
        tag="tables",
    ),
    ApiRoute(
        "GET",
        "/tables/{name}/versions",
        Action.READ,
        "Every version with rows, quarantine and inputs",
        lambda ws, a: ws.history(a["name"]),
        (NAME,),
        tag="tables",
    ),
    ApiRoute(
        "GET",
        "/tables/{name}/sample",
        Action.READ_ROWS,
        "A version's first rows (masked by role)",
        _sample,
        (NAME, VERSION, LIMIT),
        tag="tables",
    ),
    ApiRoute(
        "GET",
        "/tables/{name}/quarantine",
        Action.READ_ROWS,
        "A version's quarantined rows with reasons",
        lambda ws, a: _sample(ws, a, True),
        (NAME, VERSION, LIMIT),
        tag="tables",
    ),
    ApiRoute(
        "GET",
        "/tables/{name}/lineage",
        Action.READ,
        "What a version read, or what reads it",
        lambda ws, a: ws.lineage(
            a["name"], upstream=a["direction"] == "upstream", version=a["version"]
        ),
        (NAME, VERSION, Param("direction", enum=("upstream", "downstream"), default="upstream")),
        tag="tables",
    ),
    ApiRoute(
        "GET",
        "/lineage",
        Action.READ,
        "The project as one graph with statuses",
        lambda ws, a: ws.project_graph(a["focus"], a["hops"]),
        (Param("focus"), Param("hops", "integer", minimum=0, maximum=50)),
        tag="lineage",
    ),
    ApiRoute(
        "GET",
        "/sources",
        Action.READ,
        "Sources: kind, state, how far behind, last error",
        lambda ws, a: ws.sources(),
        tag="sources",
    ),
    ApiRoute(
        "GET",
        "/runs",
        Action.READ,
        "Runs, newest first",
        lambda ws, a: ws.runs(a["limit"], status=a["status"], kind=a["kind"]),
        (LIMIT, Param("status"), Param("kind")),
        tag="runs",
    ),
    ApiRoute(
        "POST",
        "/runs",
        Action.RUN,
        "Queue a build run (the scheduler runs it)",
        _trigger,
        body=TriggerBody,
        tag="runs",
    ),
    ApiRoute(
        "GET",
        "/runs/{id}",
        Action.READ,
        "One run with its steps",
        lambda ws, a: ws.run_info(a["id"]),
        (Param("id", where="path", required=True),),
        tag="runs",
    ),
    ApiRoute(
        "GET",
        "/runs/{id}/log",
        Action.READ,
        "The log the scheduler kept of a run",
        lambda ws, a: ws.run_log(a["id"]),
        (Param("id", where="path", required=True),),
        returns="text",
        tag="runs",
    ),
    ApiRoute(
        "POST",
        "/runs/{id}/cancel",
        Action.RUN,
        "Cancel a queued or running run",
        lambda ws, a: ws.cancel(a["id"]),
        (Param("id", where="path", required=True),),
        tag="runs",
    ),
    ApiRoute(
        "GET",
        "/schedules",
        Action.READ,
        "Schedules with their next ticks",
        lambda ws, a: ws.scheduler.schedules(),
        tag="schedules",
    ),
    ApiRoute(
        "GET",
        "/sensors",
        Action.READ,
        "Sensors with their cursors",
        lambda ws, a: ws.scheduler.sensors(),
        tag="schedules",
    ),
    ApiRoute(
        "POST",
        "/backfills/plan",
        Action.READ,
        "A backfill's plan: what would run and why (nothing runs)",
        _backfill_plan,
        body=BackfillBody,
        tag="schedules",
    ),
    ApiRoute(
        "POST",
        "/backfills",
        Action.RUN,
        "Queue a backfill run (the scheduler runs it)",
        _backfill,
        body=BackfillBody,
        tag="schedules",
    ),
    ApiRoute(
        "GET",
        "/models",
        Action.READ,
        "Models with versions, aliases, headline metrics",
        lambda ws, a: ws.models.list(),
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/models/{name}/versions/{ref}",
        Action.READ,
        "A version: metrics with intervals, lineage",
        lambda ws, a: ws.models.show(a["name"], a["ref"]),
        (NAME, Param("ref", where="path", required=True, description="number, alias or latest")),
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/models/{name}/versions",
        Action.READ,
        "Every version of a model: metrics with intervals, aliases, lineage",
        lambda ws, a: ws.models.versions(a["name"]),
        (NAME,),
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/services",
        Action.READ,
        "Services: model, alias and the version it points at, lookups",
        lambda ws, a: ws.services.list(),
        tag="services",
    ),
    ApiRoute(
        "GET",
        "/models/{name}/compare",
        Action.READ,
        "Two versions side by side",
        _compare,
        (NAME, Param("a", required=True), Param("b", required=True)),
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/models/{name}/card",
        Action.READ,
        "The model card: Markdown, or HTML with format=html",
        _card,
        (NAME, Param("ref"), Param("format", enum=("md", "html"), default="md")),
        returns="text",
        html_too=True,
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/models/{name}/history",
        Action.READ,
        "The model's audit trail",
        lambda ws, a: ws.models.events(a["name"]),
        (NAME,),
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/models/{name}/pending",
        Action.READ,
        "Promotions waiting for approval",
        lambda ws, a: ws.models.pending(a["name"]),
        (NAME,),
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/models/{name}/gates",
        Action.READ,
        "The gates on a version",
        lambda ws, a: ws.models.gate_results(a["name"], a["version"], alias=a["alias"]),
        (NAME, Param("version", required=True), Param("alias", default="champion")),
        tag="models",
    ),
    ApiRoute(
        "POST",
        "/models/{name}/promote",
        Action.PROMOTE,
        "Move an alias if the gates pass (force: admin)",
        _promote,
        (NAME,),
        body=PromoteBody,
        tag="models",
    ),
    ApiRoute(
        "POST",
        "/models/{name}/rollback",
        Action.PROMOTE,
        "Move an alias back",
        lambda ws, a: ws.models.rollback(a["name"], alias=a["body"].alias, reason=a["body"].reason),
        (NAME,),
        body=RollbackBody,
        tag="models",
    ),
    ApiRoute(
        "GET",
        "/services/{name}/predictions",
        Action.READ_ROWS,
        "The prediction log, newest first",
        lambda ws, a: ws.predictions(a["name"], since=a["since"], limit=a["limit"]).to_pylist(),
        (NAME, Param("since", description="a window such as 1h or 7d"), LIMIT),
        tag="services",
    ),
    ApiRoute(
        "GET",
        "/monitors",
        Action.READ,
        "Every monitor's state",
        lambda ws, a: ws.monitors.status(),
        tag="monitors",
    ),
    ApiRoute(
        "GET",
        "/monitors/{name}/results",
        Action.READ,
        "A monitor's stored values, oldest first",
        lambda ws, a: ws.monitors.results(
            a["name"], subject=a["subject"], statistic=a["statistic"]
        ),
        (NAME, Param("subject"), Param("statistic")),
        tag="monitors",
    ),
    ApiRoute(
        "GET",
        "/alerts",
        Action.READ,
        "Alerts and what followed",
        lambda ws, a: ws.monitors.alerts(a["monitor"]),
        (Param("monitor"),),
        tag="monitors",
    ),
    ApiRoute(
        "GET",
        "/services/{name}/report",
        Action.READ,
        "The monitoring report (HTML)",
        lambda ws, a: ws.monitors.report(a["name"]),
        (NAME,),
        returns="html",
        tag="monitors",
    ),
    ApiRoute(
        "GET",
        "/audit",
        Action.READ,
        "The audit trail, newest first",
        lambda ws, a: ws.audit(a["limit"]),
        (LIMIT,),
        tag="access",
    ),
    ApiRoute(
        "POST",
        "/query",
        Action.QUERY,
        "One read-only SELECT over pinned versions (masked)",
        _query,
        body=QueryBody,
        tag="sql",
    ),
    ApiRoute(
        "GET",
        "/queries",
        Action.QUERY,
        "Saved queries",
        lambda ws, a: ws.queries.saved(),
        tag="sql",
    ),
    ApiRoute(
        "POST",
        "/queries",
        Action.QUERY,
        "Save a query under a name",
        _save,
        body=SaveQueryBody,
        tag="sql",
    ),
)


class JsonResponse(JSONResponse):
    """orjson: dates, NaN as null, numpy scalars; anything else by ``str``."""

    def render(self, content: Any) -> bytes:
        import orjson

        options = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
        return orjson.dumps(content, default=str, option=options)


def routes(web: Web) -> list[Route]:
    out = [Route(PREFIX + r.path, _endpoint(web, r), methods=[r.method]) for r in ROUTES]
    doc = openapi()

    async def document(request: Request) -> Response:
        return JSONResponse(doc)

    out.append(Route(PREFIX + "/openapi.json", document, methods=["GET"]))
    return out


def _endpoint(web: Web, route: ApiRoute) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        clock = time.perf_counter()
        response = await answer(request)
        response.headers["server-timing"] = f"app;dur={(time.perf_counter() - clock) * 1000:.1f}"
        return response

    async def answer(request: Request) -> Response:
        try:
            principal, session = web.principal(request)
            if route.method != "GET":
                web.check_csrf(session, request.headers.get("x-csrf-token"))
            args = {
                p.name: p.parse(
                    request.path_params.get(p.name)
                    if p.where == "path"
                    else request.query_params.get(p.name)
                )
                for p in route.params
            }
            if route.body is not None:
                args["body"] = await _body(request, route.body)
            result = await web.call(principal, route.handler, web.ws, args)
        except GristmillError as exc:
            status, body = error_body(exc)
            headers = {"www-authenticate": 'Bearer realm="gristmill"'} if status == 401 else None
            return JSONResponse(body, status, headers=headers)
        except Exception:
            _, body = incident(request)
            return JSONResponse(body, 500)
        if route.returns == "text":
            return Response(str(result), media_type="text/plain; charset=utf-8")
        if route.returns == "html" or isinstance(result, Html):
            page = Response(str(result), media_type="text/html; charset=utf-8")
            page.headers["content-security-policy"] = REPORT_CSP
            return page
        return JsonResponse(to_jsonable(result))

    return endpoint


async def _body(request: Request, model: type[BaseModel]) -> BaseModel:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media != "application/json":
        raise BadRequest(
            f"the body is sent as {media[:60]!r}; this endpoint reads application/json",
            hint="send the header `Content-Type: application/json`",
        )
    raw = await request.body()
    if len(raw) > 1 << 20:
        raise BadRequest("the body is over 1 MB")
    if not raw.strip():
        raise BadRequest(
            "the request has no body",
            hint=f"send a JSON object: {{{', '.join(model.model_fields)}}}",
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInputError(
            f"{where}: {first.get('msg', 'invalid')}",
            hint=f"fields: {', '.join(model.model_fields)}",
        ) from None


# ---- the document ----------------------------------------------------------------------

ERROR = {
    "type": "object",
    "required": ["error", "message", "status"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "hint": {"type": ["string", "null"]},
        "status": {"type": "integer"},
    },
}


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR}
    for r in ROUTES:
        roles = sorted(role for role, actions in PERMISSIONS.items() if r.action in actions)
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": _operation_id(r),
            "tags": [r.tag] if r.tag else [],
            "description": f"Action `{r.action.value}`: roles {', '.join(roles)}.",
            "security": [{"key": []}, {"session": []}],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.where == "path" or p.required,
                    "schema": p.schema(),
                    "description": p.description,
                }
                for p in r.params
            ],
            "responses": _responses(r),
        }
        if r.body is not None:
            schema = r.body.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[r.body.__name__] = schema
            ref = {"$ref": f"#/components/schemas/{r.body.__name__}"}
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
        paths.setdefault(PREFIX + r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gristmill API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "key": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "gm_session"},
            },
        },
    }


def _operation_id(r: ApiRoute) -> str:
    words = r.path.strip("/").replace("{", "").replace("}", "").replace("/", "_")
    return f"{r.method.lower()}_{words}"


def _responses(r: ApiRoute) -> dict[str, Any]:
    media = {"json": "application/json", "text": "text/plain", "html": "text/html"}[r.returns]
    ok_schema: dict[str, Any] = {"type": "string"} if r.returns != "json" else {}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    content = {media: {"schema": ok_schema}}
    if r.html_too:
        content["text/html"] = {"schema": {"type": "string"}}
    out: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    statuses = set(r.statuses) | ({409, 413, 415} if r.body else set())
    if r.path.startswith("/runs/{id}") or r.path in ("/runs",):
        statuses.add(409)
    for status in sorted(statuses):
        out[str(status)] = {"description": "error", "content": error}
    out["503"] = {"description": "a server gristmill needs is unavailable", "content": error}
    return out


def roles_table() -> str:
    """The table of routes by role that docs/access.md publishes (a test keeps them equal)."""
    from gristmill.definitions.config import ROLE_NAMES

    lines = ["| route | action | " + " | ".join(ROLE_NAMES) + " |"]
    lines.append("|---|---|" + "---|" * len(ROLE_NAMES))
    for r in ROUTES:
        marks = " | ".join("yes" if r.action in PERMISSIONS[role] else "—" for role in ROLE_NAMES)
        lines.append(f"| `{r.method} {PREFIX}{r.path}` | {r.action.value} | {marks} |")
    return "\n".join(lines)
