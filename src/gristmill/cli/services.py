"""Service commands: predict (serve comes with the HTTP app)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from gristmill.cli.app import MAX_INT, JsonOpt, ProjectOpt, _open, app
from gristmill.cli.render import emit_json, out
from gristmill.errors import ServingInputError

PairsOpt = Annotated[list[str] | None, typer.Option(help="name=value, repeatable.")]


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ServingInputError(f"--{what} {item!r}: write name=value")
        try:
            parsed[name] = orjson.loads(raw)  # numbers, true/false, null, "quoted"
        except orjson.JSONDecodeError:
            parsed[name] = raw
    return parsed


@app.command()
def predict(
    service: Annotated[str, typer.Argument(help="Service name.")],
    entity: PairsOpt = None,
    feature: PairsOpt = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """One prediction through a service: lookup, score, decision and reason codes."""
    keys = {k: str(v) for k, v in _pairs(entity, "entity").items()}
    result = _open(project).services.predict(service, keys, _pairs(feature, "feature"))
    if json:
        return emit_json(result.to_dict())
    out.print(
        f"[bold]{result.decision}[/] — score {result.score:.4f} "
        f"({result.model} v{result.model_version}, {result.latency_ms:.2f} ms)"
    )
    for reason in result.reasons:
        out.print(
            f"  {reason['feature']} = {reason['value']}: {reason['contribution']:+.3f} (log-odds)"
        )


@app.command()
def serve(
    services: Annotated[list[str] | None, typer.Argument(help="Services (default: all).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
    auth: Annotated[bool, typer.Option("--auth/--no-auth", help="Require API keys.")] = True,
    reload_every: Annotated[
        float | None,
        typer.Option(min=0, max=3600, help="Seconds between checks for a moved alias (0: never)."),
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option(min=1, max=100_000, help="Connections per worker; beyond: 503.")
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(min=0.1, max=3600, help="Seconds a request has to arrive whole."),
    ] = None,
    intake_only: Annotated[
        bool,
        typer.Option("--intake-only", help="Serve only POST /v1/intake/NAME (no service)."),
    ] = False,
    project: ProjectOpt = None,
) -> None:
    """Serve predictions over HTTP (uvicorn); defaults from \\[serve] in gristmill.toml."""
    from gristmill.workspace.serve import serve as run_server

    run_server(
        _open(project),
        list(services or []),
        host=host,
        port=port,
        workers=workers,
        auth=auth,
        reload_every_s=reload_every,
        max_connections=max_connections,
        request_timeout=request_timeout,
        announce=out.print,
        intake_only=intake_only,
    )


tokens_app = typer.Typer(help="API keys for serving.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[
        str, typer.Option(help="admin, service (predict), reader or ingest (intake).")
    ] = "service",
    note: Annotated[str, typer.Option(help="What it is for.")] = "",
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Create an API key; it is shown once and stored only as its SHA-256."""
    created = _open(project).tokens.create(role, note)
    if json:
        return emit_json(created)
    out.print(created.token)
    out.print(f"[dim]id {created.id}, role {created.role}: store it now, it is not shown again[/]")


@tokens_app.command("list")
def tokens_list(project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """API keys: id, role, note, created, revoked (never the key)."""
    rows = [t.__dict__ for t in _open(project).tokens.list()]
    if json:
        return emit_json(rows)
    from gristmill.cli.render import records

    records("API keys", rows, ["id", "role", "note", "created_at", "revoked_at"])


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The key's id.")],
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Revoke an API key (servers notice within 5 seconds)."""
    _open(project).tokens.revoke(token_id)
    emit_json({"revoked": token_id}) if json else out.print(f"revoked {token_id}")


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    project: ProjectOpt = None,
) -> None:
    """The web UI and the REST API (/api/v1): log in with an API key (gristmill tokens
    create --role viewer|analyst|engineer|admin)."""
    from gristmill.web.app import serve as serve_ui

    ws = _open(project)
    if not ws.tokens.any_active():
        out.print("[yellow]no API key yet:[/] make one with `gristmill tokens create --role admin`")
    out.print(f"Gristmill UI on http://{host}:{port}  (API: /api/v1/openapi.json)")
    serve_ui(ws, host, port)


@app.command()
def predictions(
    service: Annotated[str, typer.Argument(help="Service name.")],
    since: Annotated[str | None, typer.Option(help="e.g. 15m, 1h, 2d.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_INT)] = 20,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """What a service answered (its prediction log), newest first."""
    data = _open(project).predictions(service, since=since, limit=limit)
    if json:
        return emit_json(data.to_pylist())
    from gristmill.cli.render import arrow

    shown = data.select(
        ["at", "request_id", "model_version", "entity", "score", "decision", "latency_ms"]
    )
    arrow(shown, f"{service}: {data.num_rows} prediction(s)")
