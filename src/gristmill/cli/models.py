"""Model commands: train, models (list/show/compare/card/history), promote, rollback, score."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from gristmill.cli import render_models as view
from gristmill.cli.app import JsonOpt, ProjectOpt, _open, app, report_run
from gristmill.cli.render import emit_json, out, write_output

ModelArg = Annotated[str, typer.Argument(help="Model name.")]
RefArg = Annotated[str, typer.Argument(help="Version number, alias (champion) or latest.")]
models_app = typer.Typer(
    help="Model versions, metrics, aliases and their history.", invoke_without_command=True
)
app.add_typer(models_app, name="models")


@app.command()
def train(model: ModelArg, project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """Build the training set if stale, train, evaluate and register a new version."""
    ws = _open(project)
    report_run(lambda **kw: ws.models.train(model, **kw), json)
    if not json:
        view.version_detail(ws.models.show(model))


@models_app.callback()
def models_list(ctx: typer.Context, project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """Models, their versions, headline metrics and aliases."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _open(project).models.list()
    emit_json(rows) if json else view.model_list(rows)


@models_app.command("show")
def models_show(
    model: ModelArg,
    ref: RefArg = "latest",
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """One version: metrics with 95% intervals, baseline, params, lineage, importance."""
    info = _open(project).models.show(model, ref)
    emit_json(info) if json else view.version_detail(info)


@models_app.command("compare")
def models_compare(
    model: ModelArg,
    a: Annotated[str, typer.Argument(help="First version or alias.")],
    b: Annotated[str, typer.Argument(help="Second version or alias.")],
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Two versions side by side: metric deltas, changed params and features."""
    result = _open(project).models.compare(model, a, b)
    emit_json(result) if json else view.comparison(result)


@models_app.command("card")
def models_card(
    model: ModelArg,
    ref: RefArg = "latest",
    format: Annotated[str, typer.Option("--format", help="md or html.")] = "md",  # noqa: A002
    output: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """The model card of a version (Markdown or self-contained HTML)."""
    text = _open(project).models.card(model, ref, format=format)
    if output is not None:
        write_output(output, text)
    if json:
        emit_json(
            {
                "model": model,
                "ref": ref,
                "format": format,
                "path": str(output) if output else None,
                "card": text,
            }
        )
    elif output is not None:
        out.print(f"wrote {output}")
    else:
        print(text)


@models_app.command("history")
def models_history(model: ModelArg, project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """The audit trail: every promotion, override and rollback, with who, when and why."""
    events = _open(project).models.events(model)
    emit_json(events) if json else view.events(model, events)


@app.command()
def promote(
    model: ModelArg,
    ref: RefArg,
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if gates fail (recorded as override).")
    ] = False,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Point an alias at a version, if the model's gates pass (the audit trail records who:
    your OS user's role in [access], or GRISTMILL_TOKEN's key; --force needs admin)."""
    result = _open(project).models.promote(model, ref, alias=alias, reason=reason, force=force)
    emit_json(result) if json else view.promotion(result)


@app.command()
def rollback(
    model: ModelArg,
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "champion",
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Point an alias back at the version it held before its last move."""
    result = _open(project).models.rollback(model, alias=alias, reason=reason)
    emit_json(result) if json else view.promotion(result)


@app.command()
def score(
    model: ModelArg,
    table: Annotated[str, typer.Option(help="Table (or feature view) to score.")],
    version: Annotated[int | None, typer.Option(help="Table version (default: latest).")] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="Feature views: each entity's latest row at or before this time.",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
        ),
    ] = None,
    use: Annotated[
        str | None,
        typer.Option("--model-version", help="Model version or alias (default: champion)."),
    ] = None,
    into: Annotated[
        str | None, typer.Option(help="Predictions table (default: MODEL__predictions).")
    ] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Batch-score a table version into a versioned predictions table."""
    result = _open(project).models.score(
        model, table=table, version=version, as_of=as_of, model=use, into=into
    )
    emit_json(result) if json else view.scored(result)
