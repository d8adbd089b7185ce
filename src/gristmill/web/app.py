"""``gristmill ui``: the REST API (``/api/v1``) and the UI in one Starlette app.

Both edges share ``web/edge.py`` (authentication, the principal, the error mapping); the
service layer decides what each principal may do. Static files are vendored in the
package (``web/static``): nothing is fetched from a CDN.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gristmill.errors import GristmillError, MethodNotAllowed, NoSuchRoute
from gristmill.web import api
from gristmill.web.edge import Web, error_body
from gristmill.web.pages import Pages
from gristmill.workspace.auth import Keys, Sessions
from gristmill.workspace.core import STATE_DIR, Workspace

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
logger = logging.getLogger("gristmill.web")


class SecurityHeaders:
    """Every answer: no sniffing, no framing, no referrer abroad; pages: a strict CSP
    (scripts only from this origin, so an injected ``<script>`` would not run)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = not scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if page:
                    headers.append((b"content-security-policy", CSP.encode()))
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(ws: Workspace, *, secure_cookies: bool = False) -> Starlette:
    """The API and UI over ``ws``; every call must act as a caller's principal."""
    ws.principal_required = True
    ws.refresh()  # what the definitions are compared with from now on
    keys = Keys(ws)
    sessions = Sessions(
        keys, ws.root / STATE_DIR / "ui-secret", ws.project.config.access.session_hours
    )
    web = Web(ws, keys, sessions, secure_cookies)
    pages = Pages(web)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _fallback(
            request,
            NoSuchRoute(
                f"no page or endpoint {request.url.path[:200]}",
                hint="the API's routes: /api/v1/openapi.json",
            ),
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        allowed = sorted(
            {
                m
                for r in routes
                for m in (getattr(r, "methods", None) or ())
                if getattr(r, "path", None) and r.matches(request.scope)[0].value
            }
        )
        return _fallback(request, MethodNotAllowed(request.method, allowed or ["GET"]))

    def _fallback(request: Request, exc: GristmillError) -> Response:
        status, body = error_body(exc)
        headers = {"allow": ", ".join(exc.allowed)} if isinstance(exc, MethodNotAllowed) else None
        if request.url.path.startswith("/api/"):
            return JSONResponse(body, status, headers=headers)
        return pages.render(
            "error.html", status, session=web.session(request), path=request.url.path, error=body
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    from starlette.routing import Route

    routes: list[Any] = [Route("/health", health), *api.routes(web), *pages.routes()]
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={404: not_found, 405: not_allowed},
    )


def serve(ws: Workspace, host: str, port: int) -> None:
    import uvicorn

    app = build_app(ws)
    # a stop waits this long for requests in flight (a query has its own time limit)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
