"""Serving wired to a workspace: API keys, the runtimes' host, the log, the app.

The serving layer knows nothing of workspaces; this module hands it what it needs as
plain callables (build a runtime, read an alias, check a key, append to the lake).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from gristmill.errors import ServiceConfigError
from gristmill.execution.ml.estimators import import_lightgbm_for_scoring
from gristmill.serving.app import Dispatch, Settings, build_app
from gristmill.serving.drainer import DrainerProcess
from gristmill.serving.host import Host
from gristmill.serving.metrics import MULTIPROCESS_ENV, Metrics
from gristmill.serving.protocol import GuardedProtocol
from gristmill.serving.spool import Spool
from gristmill.serving.webhook import Webhook
from gristmill.workspace.auth import Keys

if TYPE_CHECKING:
    from gristmill.definitions.sources import IntakeSource
    from gristmill.serving.intake import Intake
    from gristmill.workspace.core import Workspace

ENV = "GRISTMILL_SERVE"


class Limits(TypedDict):
    """The keyword arguments of ``GuardedProtocol.configure``, also passed to workers."""

    max_connections: int
    request_timeout: float


def check(
    ws: Workspace, names: Sequence[str], *, auth: bool, intake_only: bool = False
) -> list[str]:
    """The services to serve (default: all; none with ``intake_only``: only the intake
    sources), each loaded once to fail before serving."""
    if intake_only:
        if names:
            raise ServiceConfigError("--intake-only serves no service: name none")
        if not intake_sources(ws):
            raise ServiceConfigError(
                "--intake-only: the project has no intake source",
                hint="declare one: gm.intake_source()",
            )
        names = []
    else:
        names = list(names) or sorted(ws.project.services)
    if not names and not intake_sources(ws):
        raise ServiceConfigError(
            "the project defines no service and no intake source",
            hint="declare one: gm.service() or gm.intake_source()",
        )
    for name in names:
        ws.services.runtime(name)
    if auth and not ws.tokens.any_active():
        raise ServiceConfigError(
            "serving needs API keys and the project has none",
            hint="create one: `gristmill tokens create --role service` (or serve --no-auth)",
        )
    return names


def intake_sources(ws: Workspace) -> dict[str, IntakeSource]:
    from gristmill.definitions.sources import IntakeSource

    return {s.name: s for s in ws.graph.sources() if isinstance(s, IntakeSource)}


def spool_folder(ws: Workspace) -> Path:
    return ws.root / ".gristmill" / "spool"


def create_app(
    ws: Workspace,
    names: Sequence[str],
    *,
    auth: bool = True,
    reload_every_s: float | None = None,
    metrics_shared: Path | None = None,
    on_shutdown: Sequence[Callable[[], None]] = (),
    intake_only: bool = False,
) -> Dispatch:
    """The serving app for ``names`` (default: every service of the project)."""
    settings = ws.project.config.serve
    names = check(ws, names, auth=auth, intake_only=intake_only)
    every = settings.reload_every if reload_every_s is None else reload_every_s
    host = Host(names, ws.services.runtime, ws.services.versions, every_s=every)
    specs = [ws.services.spec(n) for n in names]
    webhooks = {s.name: Webhook(s.webhook) for s in specs if s.webhook}
    return build_app(
        host,
        Spool(spool_folder(ws)),
        Settings(
            authenticate=Keys(ws) if auth else None,
            max_body=int(settings.max_body_mb * (1 << 20)),
            metrics_public=settings.metrics == "public",
            openapi_public=settings.openapi == "public",
        ),
        metrics=Metrics(names, shared=metrics_shared),
        webhooks=webhooks,
        on_shutdown=[*on_shutdown, ws.close],
        intake=_intake(ws),
    )


def _intake(ws: Workspace) -> Intake | None:
    sources = intake_sources(ws)
    if not sources:
        return None
    from gristmill.serving.intake import Intake

    return Intake(sources, ws.root / ".gristmill")


def serve(
    ws: Workspace,
    names: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    auth: bool = True,
    reload_every_s: float | None = None,
    max_connections: int | None = None,
    request_timeout: float | None = None,
    announce: Callable[[str], None] = print,
    intake_only: bool = False,
) -> None:
    """Run the server until it is stopped; ``workers`` > 1 runs uvicorn's process manager.

    This process also runs the prediction log's drainer (``serving/drainer.py``), and
    with several workers it is their supervisor; it builds no app of its own then.
    """
    import uvicorn

    import_lightgbm_for_scoring()
    settings = ws.project.config.serve
    names = check(ws, names, auth=auth, intake_only=intake_only)
    limits: Limits = {
        "max_connections": max_connections or settings.max_connections,
        "request_timeout": request_timeout or settings.request_timeout,
    }
    GuardedProtocol.configure(**limits)
    drainer = DrainerProcess(spool_folder(ws), ws.lake.location.url)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "server_header": False,  # no need to tell clients which server software answers
        "loop": "uvloop",
        "http": GuardedProtocol,
        "timeout_graceful_shutdown": 30,
    }
    announce(
        f"serving {', '.join([*names, *(f'intake {s}' for s in intake_sources(ws))])} "
        f"on http://{host}:{port} "
        f"({workers} worker(s), auth {'on' if auth else 'off'})"
    )
    if workers == 1:
        try:
            app = create_app(ws, names, auth=auth, reload_every_s=reload_every_s,
                             on_shutdown=[drainer.stop], intake_only=intake_only)  # fmt: skip
            uvicorn.run(app, **options)  # a caught SIGTERM is re-raised after the lifespan
        finally:
            drainer.stop()
        return
    _remove_stale_metrics(ws.root / ".gristmill")
    shared = Path(tempfile.mkdtemp(prefix=f"metrics-{os.getpid()}-", dir=ws.root / ".gristmill"))
    # each worker builds its own app from these settings (see ``factory``)
    os.environ[MULTIPROCESS_ENV] = str(shared)
    os.environ[ENV] = orjson.dumps(
        {
            "project": str(ws.root),
            "services": names,
            "intake_only": intake_only,
            "auth": auth,
            "reload": reload_every_s,
            "limits": limits,
            "metrics": str(shared),
        }  # fmt: skip
    ).decode()
    ws.close()
    try:
        uvicorn.run("gristmill.workspace.serve:factory", factory=True, workers=workers, **options)
    finally:
        drainer.stop()
        shutil.rmtree(shared, ignore_errors=True)


def _remove_stale_metrics(state: Path) -> None:
    """Metrics folders of servers that were killed (their supervisor's pid is gone)."""
    for folder in state.glob("metrics-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def factory() -> Dispatch:
    """For `uvicorn --factory` with several workers: settings come from the environment."""
    from gristmill.workspace.core import Workspace

    _stop_with_parent()
    import_lightgbm_for_scoring()
    settings = orjson.loads(os.environ[ENV])
    GuardedProtocol.configure(**settings["limits"])
    ws = Workspace.open(settings["project"])
    return create_app(
        ws,
        settings["services"],
        auth=settings["auth"],
        reload_every_s=settings["reload"],
        metrics_shared=Path(settings["metrics"]),
        intake_only=settings.get("intake_only", False),
    )


def _stop_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM when its supervisor dies (a graceful stop)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker lives on until stopped
        return
