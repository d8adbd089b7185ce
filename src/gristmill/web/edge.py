"""The web edge shared by the REST API and the UI: who is calling, one error mapping,
calling the service layer as that principal.

A request is authenticated once (``Authorization: Bearer <key>`` or the UI's session
cookie), then the service method runs in a worker thread under ``access.acting_as`` —
the service layer's ``authorize`` does the checking. A ``GristmillError`` becomes its
status through ``serving.http.status_of`` (the serving app's mapping, so both apps
answer alike); anything else is a bug: logged with an incident id, answered 500.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gristmill.access import Principal, acting_as
from gristmill.errors import Forbidden, GristmillError, Unauthorized
from gristmill.serving.http import internal_error_body, key_principal, status_of
from gristmill.workspace.auth import Keys, Session, Sessions
from gristmill.workspace.core import Workspace

logger = logging.getLogger("gristmill.web")
COOKIE = "gm_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
REFRESH_S = 1.0
T = TypeVar("T")


@dataclass
class Web:
    """What every request handler needs: the workspace, keys and sessions."""

    ws: Workspace
    keys: Keys
    sessions: Sessions
    secure_cookies: bool = False
    checked: float = 0.0
    """When the definitions were last compared with the files."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def call(self, principal: Principal, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(*args, **kw)`` in a worker thread, acting as ``principal``, over the
        project's definitions as they are on disk now (re-read at most once a second)."""
        return await run_in_threadpool(partial(self._fresh, principal, fn, *args, **kw))

    def _fresh(self, principal: Principal, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        now = time.monotonic()
        if now - self.checked > REFRESH_S:
            with self.lock:
                if now - self.checked > REFRESH_S:
                    self.ws.refresh()
                    self.checked = now
        return _as(principal, fn, *args, **kw)

    def session(self, request: Request) -> Session | None:
        return self.sessions.read(request.cookies.get(COOKIE))

    def principal(self, request: Request) -> tuple[Principal, Session | None]:
        """The caller: a bearer key, else a session cookie; ``Unauthorized`` if neither."""
        header = request.headers.get("authorization")
        if header is not None:
            return key_principal(header, self.keys), None
        session = self.session(request)
        if session is None:
            raise Unauthorized(
                "not logged in",
                hint="send `Authorization: Bearer <key>`, or log in at /login",
            )
        return session.principal, session

    @staticmethod
    def check_csrf(session: Session | None, given: str | None) -> None:
        """A cookie-authenticated change must carry the session's CSRF token."""
        if session is None:
            return  # a bearer key: no ambient credential to forge
        if not given or given != session.csrf:
            raise Forbidden(
                "the form's CSRF token is missing or wrong",
                hint="reload the page and submit the form again",
            )


def _as(principal: Principal, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    with acting_as(principal):
        return fn(*args, **kw)


def error_body(exc: GristmillError) -> tuple[int, dict[str, Any]]:
    status = status_of(exc)
    return status, {**exc.to_dict(), "status": status}


def incident(request: Request) -> tuple[str, dict[str, Any]]:
    """A bug: log the traceback under an id, answer with the id only."""
    number = uuid.uuid4().hex[:12]
    logger.exception("internal error %s on %s %s", number, request.method, request.url.path)
    return number, internal_error_body(number)
