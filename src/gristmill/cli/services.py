"""Service commands: predict (serve comes with the HTTP app)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from gristmill.cli.app import JsonOpt, ProjectOpt, _open, app
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
