"""The HTTP app: Starlette routes over the host's runtimes, with one error edge.

Routes: ``POST /v1/services/{name}/predict`` (one entity or ``instances``), the Open
Inference Protocol v2 (``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``,
``/v2/models/{name}/infer``), ``GET /metrics`` (Prometheus) and ``GET /openapi.json``.
Every ``GristmillError`` becomes a JSON body with its status in ``_error``, the only
place where errors are mapped; anything else is a bug: a 500 with the request id, logged
with its traceback.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gristmill.errors import (
    BadRequest,
    EntityNotFound,
    Forbidden,
    GristmillError,
    OnlineStoreError,
    PayloadTooLarge,
    ServingInputError,
    Unauthorized,
    UnknownServiceError,
)
from gristmill.serving.host import Host
from gristmill.serving.log import PredictionLog, ProcessLog
from gristmill.serving.openapi import openapi
from gristmill.serving.runtime import Prediction
from gristmill.serving.webhook import Webhook

logger = logging.getLogger("gristmill.serving")

STATUS = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    EntityNotFound: 404,
    UnknownServiceError: 404,
    PayloadTooLarge: 413,
    ServingInputError: 422,
    OnlineStoreError: 503,
}
PREDICT_ROLES = {"admin", "service"}
READ_ROLES = {"admin", "service", "reader"}
MAX_BATCH = 1_000


@dataclass(frozen=True)
class Settings:
    authenticate: Callable[[str], str | None] | None
    """Token -> role, or None for an unknown token; None here: no authentication."""
    max_body: int = 1 << 20


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _status(exc: GristmillError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "gristmill_request_seconds",
            "Time to answer a request, by service and status.",
            ["service", "status"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.decisions = Counter(
            "gristmill_decisions",
            "Decisions made, by service and action.",
            ["service", "decision"],
            registry=self.registry,
        )


def build_app(
    host: Host,
    log: PredictionLog | ProcessLog | None,
    settings: Settings,
    *,
    webhooks: Mapping[str, Webhook] | None = None,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> Starlette:
    """The app; ``on_shutdown`` runs after the server stopped taking requests."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        host.start()
        try:
            yield
        finally:
            host.stop()
            if log is not None:
                log.close()
            for hook in (webhooks or {}).values():
                hook.close()
            for hook in on_shutdown:
                hook()

    async def guarded(request: Request, roles: set[str], handler: Callable[..., Any]) -> Response:
        clock = time.perf_counter()
        service = request.path_params.get("name", "")
        try:
            role = _authorize(request, settings, roles)
            response = await handler(request, role)
        except GristmillError as exc:
            response = _json({**exc.to_dict(), "status": _status(exc)}, _status(exc))
        except Exception:  # a bug: answer 500 with an id to find the traceback in the log
            incident = uuid.uuid4().hex[:12]
            logger.exception("internal error %s on %s", incident, request.url.path)
            response = _json(
                {"error": "InternalError", "message": f"internal error {incident}", "status": 500},
                500,
            )
        metrics.latency.labels(service, str(response.status_code)).observe(
            time.perf_counter() - clock
        )
        return response

    async def predict(request: Request) -> Response:
        async def handle(request: Request, role: str) -> Response:
            runtime = host.get(request.path_params["name"])
            body = await _body(request, settings)
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            if "instances" in body:
                items = body["instances"]
                if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
                    raise ServingInputError(f"instances must be a list of 1 to {MAX_BATCH}")
                results = [_one(runtime, item, f"instances[{i}].") for i, item in enumerate(items)]
                for p in results:
                    _record(p, role)
                return _json({"predictions": [p.to_dict() for p in results]})
            p = _one(runtime, body, "")
            _record(p, role)
            return _json(p.to_dict())

        return await guarded(request, PREDICT_ROLES, handle)

    def _record(p: Prediction, role: str, served: bool = True) -> None:
        if served:
            metrics.decisions.labels(p.service, p.decision).inc()
            hook = (webhooks or {}).get(p.service)
            if hook is not None:
                hook.send(
                    {
                        "request_id": p.request_id,
                        "service": p.service,
                        "entity": p.entity,
                        "decision": p.decision,
                        "score": p.score,
                        "reasons": p.reasons,
                        "model_version": p.model_version,
                    }
                )
        if p.shadow is not None:
            _record(p.shadow, role, served=False)
        if log is not None:
            log.append(
                {
                    "request_id": p.request_id,
                    "at": datetime.now(UTC),
                    "service": p.service,
                    "model": p.model,
                    "model_version": p.model_version,
                    "role": role,
                    "entity": p.entity,
                    "features": p.features,
                    "score": p.score,
                    "decision": p.decision,
                    "reasons": p.reasons,
                    "found": p.found,
                    "latency_ms": p.latency_ms,
                    "variant": p.variant,
                    "served": served,
                }
            )

    async def infer(request: Request) -> Response:
        async def handle(request: Request, role: str) -> Response:
            runtime = host.get(request.path_params["name"])
            body = await _body(request, settings)
            rows = _oip_rows(body, runtime.entity)
            results = [_one(runtime, row, f"inputs row {i}: ") for i, row in enumerate(rows)]
            for p in results:
                _record(p, role)
            return _json(
                {
                    "model_name": request.path_params["name"],
                    "model_version": str(runtime.model.version),
                    "id": body.get("id") or uuid.uuid4().hex,
                    "outputs": [
                        {
                            "name": "score",
                            "shape": [len(results)],
                            "datatype": "FP64",
                            "data": [p.score for p in results],
                        },
                        {
                            "name": "decision",
                            "shape": [len(results)],
                            "datatype": "BYTES",
                            "data": [p.decision for p in results],
                        },
                    ],
                }
            )

        return await guarded(request, PREDICT_ROLES, handle)

    async def model_metadata(request: Request) -> Response:
        async def handle(request: Request, role: str) -> Response:
            runtime = host.get(request.path_params["name"])
            inputs = [{"name": k, "datatype": "BYTES", "shape": [-1]} for k in runtime.entity]
            inputs += [
                {
                    "name": f,
                    "datatype": "FP64" if f not in _categorical(runtime) else "BYTES",
                    "shape": [-1],
                }
                for f in runtime.spec.request_features
            ]
            return _json(
                {
                    "name": request.path_params["name"],
                    "versions": [str(runtime.model.version)],
                    "platform": runtime.model.manifest.estimator,
                    "inputs": inputs,
                    "outputs": [
                        {"name": "score", "datatype": "FP64", "shape": [-1]},
                        {"name": "decision", "datatype": "BYTES", "shape": [-1]},
                    ],
                }
            )

        return await guarded(request, READ_ROLES, handle)

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        return _json({"ready": bool(host.runtimes)})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi_endpoint(request: Request) -> Response:
        return _json(openapi(sorted(host.runtimes)))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _json(
            {"error": "NotFound", "message": f"no route {request.url.path}", "status": 404}, 404
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return _json(
            {
                "error": "MethodNotAllowed",
                "message": f"{request.method} is not allowed here",
                "status": 405,
            },
            405,
        )

    routes = [
        Route("/v1/services/{name}/predict", predict, methods=["POST"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: method_not_allowed},
        lifespan=lifespan,
    )
    app.state.host = host
    app.state.log = log
    app.state.metrics = metrics
    return app


def _categorical(runtime: Any) -> set[str]:
    return {f.name for f in runtime.model.manifest.features if f.kind.value == "categorical"}


def _authorize(request: Request, settings: Settings, roles: set[str]) -> str:
    if settings.authenticate is None:
        return "anonymous"
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "missing API key", hint="send `Authorization: Bearer <key>` (gristmill tokens create)"
        )
    role = settings.authenticate(token.strip())
    if role is None:
        raise Unauthorized("unknown or revoked API key", hint="create one: gristmill tokens create")
    if role not in roles:
        raise Forbidden(
            f"role {role!r} may not do this", hint=f"roles that may: {', '.join(sorted(roles))}"
        )
    return role


async def _body(request: Request, settings: Settings) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {settings.max_body}")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > settings.max_body:
            raise PayloadTooLarge(f"the body is over the limit of {settings.max_body} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _one(runtime: Any, item: Any, where: str) -> Prediction:
    if not isinstance(item, dict):
        raise ServingInputError(f"{where or 'the body'} must be an object with entity")
    entity = item.get("entity")
    if not isinstance(entity, dict):
        raise ServingInputError(f'{where}entity must be an object, e.g. {{"user_id": "u_1"}}')
    features = item.get("features", {})
    if not isinstance(features, dict):
        raise ServingInputError(f"{where}features must be an object")
    for key, value in entity.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ServingInputError(f"{where}entity.{key} must be a string or an integer")
    return runtime.predict({k: str(v) for k, v in entity.items()}, features)


def _oip_rows(body: Any, entity: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise ServingInputError("inputs must be a non-empty list of tensors")
    columns: dict[str, list[Any]] = {}
    for i, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ServingInputError(f"inputs[{i}] must be an object with name and data")
        data = tensor.get("data")
        if not isinstance(data, list):
            raise ServingInputError(f"inputs[{i}].data must be a list")
        columns[tensor["name"]] = data
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1 or 0 in sizes or max(sizes) > MAX_BATCH:
        raise ServingInputError(f"every input needs the same number of values (1 to {MAX_BATCH})")
    (n,) = sizes
    return [
        {
            "entity": {k: columns[k][i] for k in entity if k in columns},
            "features": {k: v[i] for k, v in columns.items() if k not in entity},
        }
        for i in range(n)
    ]
