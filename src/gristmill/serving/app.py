"""The HTTP app: endpoints over the host's runtimes, one error edge, one auth check.

Routes: ``POST /v1/services/{name}/predict`` (one entity or ``instances``); the Open
Inference Protocol v2 (``GET /v2``, ``/v2/health/live|ready``, ``/v2/models/{name}``,
``…/ready``, ``POST …/infer``, each also under ``/versions/{version}``); ``GET /metrics``
(Prometheus) and ``GET /openapi.json``.

Every endpoint is an ``Endpoint``: authorize, run the handler, translate a
``GristmillError`` (``http.reply_for``, the only mapping), send, count. Requests for a
served service's exact paths are dispatched by a dictionary lookup; everything else
(templates, unknown paths, wrong methods, the lifespan) goes through Starlette's router,
which calls the same endpoints. Each answered prediction is written to this worker's
spool before its response is sent (``serving/spool.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route

from gristmill import __version__
from gristmill.access import Action, Principal, authorize
from gristmill.definitions.sources.intake import IntakeSource
from gristmill.errors import (
    GristmillError,
    MethodNotAllowed,
    NoSuchRoute,
    OnlineStoreError,
    PredictionLogError,
    UnknownModelError,
)
from gristmill.serving import oip
from gristmill.serving.host import Host
from gristmill.serving.http import (
    ClientGone,
    Receive,
    Reply,
    Request,
    Scope,
    Send,
    internal_error,
    json_reply,
    key_principal,
    reply_for,
    send_reply,
    status_of,
)
from gristmill.serving.intake import Intake
from gristmill.serving.log import prediction_rows
from gristmill.serving.metrics import CONTENT_TYPE, UNMATCHED, Metrics
from gristmill.serving.openapi import openapi
from gristmill.serving.runtime import Prediction, ServiceRuntime
from gristmill.serving.spool import Spool, encode
from gristmill.serving.v1 import batch_reply, instances
from gristmill.serving.webhook import Webhook

logger = logging.getLogger("gristmill.serving")

PREDICT = "/v1/services/{name}/predict"
MODEL = "/v2/models/{name}"
VERSION = "/v2/models/{name}/versions/{version}"

Handler = Callable[[Request], Awaitable[Reply]]


@dataclass(frozen=True)
class Settings:
    authenticate: Callable[[str], Principal | None] | None
    """Token -> principal, or None for an unknown token; None here: no authentication."""
    max_body: int = 1 << 20
    metrics_public: bool = False
    """Whether ``/metrics`` answers without a key (default: a viewer key or above)."""
    openapi_public: bool = False
    """Whether ``/openapi.json`` answers without a key (default: any valid key)."""


class Endpoint:
    """One route's ASGI callable: authorize, handle, map errors, send, count."""

    def __init__(
        self,
        route: str,
        handler: Handler,
        action: Action | None,
        *,
        settings: Settings,
        metrics: Metrics,
        oip: bool = False,
    ) -> None:
        self.route = route
        self.handler = handler
        self.action = action if settings.authenticate is not None else None
        self.settings = settings
        self.metrics = metrics
        self.oip = oip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        clock = time.perf_counter()
        request = Request(scope, receive, self.settings.max_body)
        try:
            if self.action is not None:
                request.role = authenticate(request, self.settings, self.action).role
            reply = await self.handler(request)
        except ClientGone:  # nothing to answer; counted, not logged as an error
            self._count(request, 499, clock)
            return
        except GristmillError as exc:
            reply = reply_for(exc, oip=self.oip)
        except Exception:  # a bug: answer 500 with an id to find the traceback in the log
            incident = uuid.uuid4().hex[:12]
            logger.exception("internal error %s on %s", incident, scope.get("path"))
            reply = internal_error(incident)
        await send_reply(send, reply)
        self._count(request, reply.status, clock)

    def _count(self, request: Request, status: int, clock: float) -> None:
        service = self.metrics.service(request.params.get("name"))
        self.metrics.observe(self.route, service, status, time.perf_counter() - clock)


def authenticate(request: Request, settings: Settings, action: Action) -> Principal:
    """The principal of the request's key, if it may take ``action`` (``access.authorize``:
    the one place roles are checked)."""
    assert settings.authenticate is not None
    header = (request.header(b"authorization") or b"").decode("latin-1")
    principal = key_principal(header, settings.authenticate)
    return authorize(principal, action)


class Handlers:
    """What each route does, over the host's runtimes, the spool and the metrics."""

    def __init__(
        self,
        host: Host,
        spool: Spool | None,
        metrics: Metrics,
        webhooks: Mapping[str, Webhook],
    ) -> None:
        self.host = host
        self.spool = spool
        self.metrics = metrics
        self.webhooks = webhooks
        self.intake_only = False
        self.intake_sources: Mapping[str, IntakeSource] = {}

    async def predict(self, request: Request) -> Reply:
        runtime = self.host.get(request.params["name"])
        items, batch = instances(await request.json(), runtime)
        if not batch:
            answer = runtime.answer(*items[0])
            self._record([answer], request.role)
            return json_reply(answer.to_dict())
        results: list[Prediction | GristmillError] = []
        for entity, features in items:
            try:
                results.append(runtime.answer(entity, features))
            except (OnlineStoreError, PredictionLogError):
                raise  # the server's trouble, not this instance's: the whole request
            except GristmillError as exc:
                results.append(exc)
        self._record([r for r in results if isinstance(r, Prediction)], request.role)
        return batch_reply(results, status_of)

    async def infer(self, request: Request) -> Reply:
        runtime = self._runtime_at(request)
        request.check_json_type(b"application/octet-stream")
        parsed = oip.parse(await request.body(), request.header(oip.HEADER_LENGTH))
        rows = oip.rows(parsed, runtime.entity, runtime.spec.request_features, runtime.numeric)
        version = _version(request)
        answers = []
        for i, (entity, features) in enumerate(rows):
            checked = runtime.check(entity, features, where=f"row {i}: ")
            answers.append(runtime.answer(*checked, version=version))
        self._record(answers, request.role)
        body, header = oip.response(
            parsed,
            request.params["name"],
            answers[0].model_version,
            [a.score for a in answers],
            [a.decision for a in answers],
        )
        if header is None:
            return Reply(200, body)
        return Reply(
            200,
            body,
            b"application/octet-stream",
            [(b"inference-header-content-length", str(header).encode())],
        )

    def _record(self, answers: Sequence[Prediction], role: str) -> None:
        """Spool every answer (before its response is sent), then count and notify."""
        if not answers:
            return
        at_us = time.time_ns() // 1000
        rows = [row for a in answers for row in prediction_rows(a, role, at_us)]
        if self.spool is not None:
            self.spool.write(encode(rows))
        for answer in answers:
            self.metrics.decided(answer.service, answer.decision)
            hook = self.webhooks.get(answer.service)
            if hook is not None:
                hook.send(
                    {
                        "request_id": answer.request_id,
                        "service": answer.service,
                        "entity": answer.entity,
                        "decision": answer.decision,
                        "score": answer.score,
                        "reasons": answer.reasons,
                        "model_version": answer.model_version,
                    }
                )

    def _runtime_at(self, request: Request) -> ServiceRuntime:
        runtime = self.host.get(request.params["name"])
        version = _version(request)
        if version is not None:
            runtime.variant(version)
        return runtime

    async def model_metadata(self, request: Request) -> Reply:
        runtime = self._runtime_at(request)
        categorical = runtime.categorical
        inputs = [{"name": k, "datatype": "BYTES", "shape": [-1]} for k in runtime.entity]
        inputs += [
            {"name": f, "datatype": "BYTES" if f in categorical else "FP64", "shape": [-1]}
            for f in runtime.spec.request_features
        ]
        return json_reply(
            {
                "name": request.params["name"],
                "versions": [str(v) for v in runtime.served_versions],
                "platform": runtime.model.manifest.estimator,
                "inputs": inputs,
                "outputs": [
                    {"name": n, "datatype": t, "shape": [-1]} for n, t in oip.OUTPUT_TYPES.items()
                ],
            }
        )

    async def model_ready(self, request: Request) -> Reply:
        self._runtime_at(request)
        return json_reply({"name": request.params["name"], "ready": True})

    async def server_metadata(self, request: Request) -> Reply:
        return json_reply(
            {"name": "gristmill", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def live(self, request: Request) -> Reply:
        return json_reply({"live": True})

    async def ready(self, request: Request) -> Reply:
        if self.spool is not None and not self.spool.healthy:
            reason = "the prediction log cannot be written (disk full?): predictions get 503"
            return json_reply({"ready": False, "reason": reason}, 503)
        ready = bool(self.host.runtimes) or self.intake_only
        return json_reply({"ready": ready}, 200 if ready else 503)

    async def metrics_text(self, request: Request) -> Reply:
        return Reply(200, self.metrics.render(), CONTENT_TYPE)

    async def openapi_doc(self, request: Request) -> Reply:
        return json_reply(openapi(self.host.runtimes, self.intake_sources))


def _version(request: Request) -> int | None:
    raw = request.params.get("version")
    if raw is None:
        return None
    if not raw.isdigit():
        raise UnknownModelError(f"model version {raw!r} is not a number", hint="e.g. /versions/1")
    return int(raw)


class Dispatch:
    """Exact paths of served services straight to their endpoint; the rest to Starlette."""

    def __init__(
        self, exact: dict[tuple[str, str], tuple[Endpoint, dict[str, str]]], rest: Starlette
    ):
        self.exact = exact
        self.rest = rest
        self.state = rest.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hit = self.exact.get((scope["method"], scope["path"]))
            if hit is not None:
                scope["path_params"] = hit[1]
                await hit[0](scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.rest(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The lifespan, quiet when a second Ctrl-C forces the exit.

        uvicorn then skips the lifespan's shutdown and cancels it: the shutdown code still
        runs (``finally``) and the spool keeps every answer for the drainer, but Starlette
        would report the cancellation as a failed shutdown, with its traceback.
        """
        held: list[MutableMapping[str, Any]] = []

        async def hold_failure(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "lifespan.shutdown.failed":
                held.append(message)  # sent below unless it was a forced exit
                return
            await send(message)

        try:
            await self.rest(scope, receive, hold_failure)
        except asyncio.CancelledError:
            logger.warning("forced stop: open requests were dropped; answered ones are logged")
            return
        except BaseException:
            for message in held:
                await send(message)
            raise
        for message in held:
            await send(message)


def build_app(
    host: Host,
    spool: Spool | None,
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    webhooks: Mapping[str, Webhook] | None = None,
    on_shutdown: Sequence[Callable[[], None]] = (),
    intake: Intake | None = None,
) -> Dispatch:
    """The app; ``on_shutdown`` runs after the server stopped taking requests."""
    metrics = metrics or Metrics(host.runtimes)
    handlers = Handlers(host, spool, metrics, webhooks or {})
    handlers.intake_only = intake is not None and not host.runtimes
    handlers.intake_sources = intake.sources if intake is not None else {}

    def endpoint(route: str, handler: Handler, action: Action | None, **kw: Any) -> Endpoint:
        return Endpoint(route, handler, action, settings=settings, metrics=metrics, **kw)

    metrics_roles = None if settings.metrics_public else Action.METRICS
    openapi_roles = None if settings.openapi_public else Action.OPENAPI
    table: list[tuple[str, str, Endpoint]] = [
        ("POST", PREDICT, endpoint(PREDICT, handlers.predict, Action.PREDICT)),
        ("GET", "/v2", endpoint("/v2", handlers.server_metadata, None, oip=True)),
        ("GET", "/v2/health/live", endpoint("/v2/health/live", handlers.live, None, oip=True)),
        ("GET", "/v2/health/ready", endpoint("/v2/health/ready", handlers.ready, None, oip=True)),
        ("GET", "/metrics", endpoint("/metrics", handlers.metrics_text, metrics_roles)),
        ("GET", "/openapi.json", endpoint("/openapi.json", handlers.openapi_doc, openapi_roles)),
    ]
    if intake is not None:
        from gristmill.serving import intake as posting

        table.append(("POST", posting.ROUTE, endpoint(posting.ROUTE, intake.post, Action.INGEST)))
    for base in (MODEL, VERSION):
        table += [
            (
                "GET",
                base,
                endpoint(base, handlers.model_metadata, Action.SERVICE_METADATA, oip=True),
            ),
            (
                "GET",
                f"{base}/ready",
                endpoint(f"{base}/ready", handlers.model_ready, Action.SERVICE_METADATA, oip=True),
            ),
            (
                "POST",
                f"{base}/infer",
                endpoint(f"{base}/infer", handlers.infer, Action.PREDICT, oip=True),
            ),
        ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        host.start()
        # what was built so far (models, runtimes, imports) lives as long as the server:
        # keep it out of the collector's full passes, which otherwise stall a request
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # let exit collect it (extensions report frozen objects as leaks)
            host.stop()
            if spool is not None:
                spool.close()
            for hook in (webhooks or {}).values():
                hook.close()
            if intake is not None:
                intake.close()
            for shutdown in on_shutdown:
                shutdown()

    async def not_found(request: StarletteRequest, exc: Exception) -> Response:
        return _fallback(request, NoSuchRoute(f"no route {request.url.path}", hint=_routes_hint()))

    async def method_not_allowed(request: StarletteRequest, exc: Exception) -> Response:
        allow = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        return _fallback(request, MethodNotAllowed(request.method, allow.split(", ")))

    def _fallback(request: StarletteRequest, exc: GristmillError) -> Response:
        reply = reply_for(exc, oip=request.url.path.startswith("/v2"))
        metrics.observe(UNMATCHED, "", reply.status, 0.0)
        headers = {k.decode(): v.decode() for k, v in reply.headers}
        return Response(reply.body, reply.status, headers, media_type="application/json")

    rest = Starlette(
        routes=[Route(path, ep, methods=[method]) for method, path, ep in table],
        exception_handlers={404: not_found, 405: method_not_allowed},
        lifespan=lifespan,
    )
    exact = {
        (method, path.format(name=name)): (ep, {"name": name})
        for method, path, ep in table
        if "{name}" in path and "{version}" not in path
        for name in host.runtimes
    }
    exact.update({(m, p): (ep, {}) for m, p, ep in table if "{" not in p})
    if intake is not None:
        from gristmill.serving.intake import ROUTE as INTAKE

        exact.update(
            {
                ("POST", INTAKE.format(name=name)): (ep, {"name": name})
                for m, p, ep in table
                if p == INTAKE
                for name in intake.sources
            }
        )
    app = Dispatch(exact, rest)
    app.state.host = host
    app.state.spool = spool
    app.state.metrics = metrics
    return app


def build_metrics_app(render: Callable[[], bytes], settings: Settings) -> Starlette:
    """A daemon's own little server (the scheduler's): ``GET /metrics`` with an admin or
    reader key (unless public), ``GET /health`` without one; the same Endpoint, and so
    the same single role check, as the serving app."""
    metrics = Metrics(())

    async def metrics_text(request: Request) -> Reply:
        return Reply(200, await asyncio.to_thread(render), CONTENT_TYPE)

    async def health(request: Request) -> Reply:
        return Reply(200, b'{"status":"ok"}')

    roles = None if settings.metrics_public else Action.METRICS
    table = [
        ("/metrics", Endpoint("/metrics", metrics_text, roles, settings=settings, metrics=metrics)),
        ("/health", Endpoint("/health", health, None, settings=settings, metrics=metrics)),
    ]

    async def fallback(request: StarletteRequest, exc: Exception) -> Response:
        error: GristmillError = NoSuchRoute(
            f"no route {request.url.path}", hint="routes: GET /metrics, GET /health"
        )
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            error = MethodNotAllowed(request.method, ["GET"])
        reply = reply_for(error)
        headers = {k.decode(): v.decode() for k, v in reply.headers}
        return Response(reply.body, reply.status, headers, media_type="application/json")

    return Starlette(
        routes=[Route(path, ep, methods=["GET"]) for path, ep in table],
        exception_handlers={404: fallback, 405: fallback},
    )


def _routes_hint() -> str:
    return (
        "routes: POST /v1/services/{name}/predict, POST /v1/intake/{source}, "
        "GET|POST /v2/models/{name}"
        "[/versions/{v}][/ready|/infer], GET /metrics, GET /openapi.json"
    )
