"""Serving wired to a workspace: API keys, the runtimes' host, the log, the app.

The serving layer knows nothing of workspaces; this module hands it what it needs as
plain callables (build a runtime, read an alias, check a key, append to the lake).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gristmill.errors import ServiceConfigError, UnknownNameError
from gristmill.serving.app import Settings, build_app
from gristmill.serving.host import Host
from gristmill.serving.log import ProcessLog
from gristmill.serving.webhook import Webhook
from gristmill.storage.catalog import ApiToken
from gristmill.storage.catalog.records import utcnow

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from gristmill.workspace.core import Workspace

ROLES = ("admin", "service", "reader")
ENV = "GRISTMILL_SERVE"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    id: str
    role: str
    note: str
    token: str
    """Shown once; only its SHA-256 is stored."""


class Tokens:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def create(self, role: str, note: str = "") -> NewToken:
        if role not in ROLES:
            raise UnknownNameError("role", role, list(ROLES))
        token_id = secrets.token_hex(4)
        token = f"gm_{token_id}_{secrets.token_urlsafe(24)}"
        self.ws.catalog.add_token(ApiToken(token_id, role, _hash(token), note, utcnow()))
        return NewToken(token_id, role, note, token)

    def list(self) -> list[ApiToken]:
        return self.ws.catalog.tokens()

    def revoke(self, token_id: str) -> None:
        if not self.ws.catalog.revoke_token(token_id):
            active = [t.id for t in self.ws.catalog.tokens() if t.revoked_at is None]
            raise UnknownNameError("active key", token_id, active)


class TokenCache:
    """Token -> role, re-read from the catalog at most every ``ttl_s`` (revocation lag)."""

    def __init__(self, ws: Workspace, ttl_s: float = 5.0) -> None:
        self.ws = ws
        self.ttl_s = ttl_s
        self._roles: dict[str, str] = {}
        self._loaded = 0.0
        self._lock = threading.Lock()

    def __call__(self, token: str) -> str | None:
        now = time.monotonic()
        if now - self._loaded > self.ttl_s:
            with self._lock:
                self._roles = {
                    t.hash: t.role for t in self.ws.catalog.tokens() if t.revoked_at is None
                }
                self._loaded = now
        return self._roles.get(_hash(token))


def create_app(
    ws: Workspace,
    names: Sequence[str],
    *,
    auth: bool = True,
    reload_every_s: float = 2.0,
    log_every_s: float = 0.25,
) -> Starlette:
    """The serving app for ``names`` (default: every service of the project)."""
    names = list(names) or sorted(ws.project.services)
    if not names:
        raise ServiceConfigError("the project defines no service", hint="declare one: gm.service()")
    for name in names:
        ws.services.spec(name)
    if auth and not any(t.revoked_at is None for t in ws.catalog.tokens()):
        raise ServiceConfigError(
            "serving needs API keys and the project has none",
            hint="create one: `gristmill tokens create --role service` (or serve --no-auth)",
        )

    host = Host(names, ws.services.runtime, ws.services.versions, every_s=reload_every_s)
    log = ProcessLog(str(ws.lake.root), every_s=log_every_s)
    specs = [ws.services.spec(n) for n in names]
    webhooks = {s.name: Webhook(s.webhook) for s in specs if s.webhook}
    return build_app(
        host,
        log,
        Settings(authenticate=TokenCache(ws) if auth else None),
        webhooks=webhooks,
        on_shutdown=[ws.close],
    )


def serve(
    ws: Workspace,
    names: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    auth: bool = True,
    reload_every_s: float = 2.0,
    announce: Callable[[str], None] = print,
) -> None:
    """Run the server until it is stopped; ``workers`` > 1 runs uvicorn's process manager."""
    import uvicorn

    app = create_app(ws, names, auth=auth, reload_every_s=reload_every_s)  # checks first
    announce(
        f"serving {', '.join(sorted(app.state.host.runtimes))} on http://{host}:{port} "
        f"({workers} worker(s), auth {'on' if auth else 'off'})"
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        uvicorn.run(app, **options)
        return
    # each worker process builds its own app from these settings (see ``factory``)
    os.environ[ENV] = orjson.dumps(
        {"project": str(ws.root), "services": list(names), "auth": auth, "reload": reload_every_s}
    ).decode()
    ws.close()
    uvicorn.run("gristmill.workspace.serve:factory", factory=True, workers=workers, **options)


def factory() -> Starlette:
    """For `uvicorn --factory` with several workers: settings come from the environment."""
    from gristmill.workspace.core import Workspace

    settings = orjson.loads(os.environ[ENV])
    ws = Workspace.open(settings["project"])
    return create_app(
        ws, settings["services"], auth=settings["auth"], reload_every_s=settings["reload"]
    )
