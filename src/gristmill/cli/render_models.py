"""Rich views of the model registry's shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from gristmill.cli.render import fmt_time, out, records
from gristmill.workspace.cards import fmt
from gristmill.workspace.shapes import (
    Comparison,
    ModelSummary,
    ModelVersionInfo,
    Promotion,
    ScoreResult,
)

if TYPE_CHECKING:
    from gristmill.workspace.shapes import ModelEventInfo


def model_list(rows: list[ModelSummary]) -> None:
    view = []
    for r in rows:
        headline = list(r.headline.items())[:3]
        view.append(
            {
                "model": r.name,
                "training set": r.training_set,
                "estimator": r.estimator,
                "versions": r.versions,
                "latest": f"v{r.latest}" if r.latest else "never trained",
                "aliases": ", ".join(f"{a} → v{v}" for a, v in r.aliases.items()),
                "latest metrics": ", ".join(f"{k} {fmt(v)}" for k, v in headline),
            }
        )
    columns = ["model", "training set", "estimator", "versions", "latest", "aliases"]
    records("models", view, [*columns, "latest metrics"])


def split_line(split: dict[str, Any]) -> None:
    shares = (
        f" ({split['test_share']:.1%} of rows; {split['test_fraction']:.0%} asked)"
        if "test_share" in split
        else ""
    )
    out.print(
        f"split: {split.get('kind')} — train {split.get('train_rows')} rows, "
        f"test {split.get('test_rows')} rows"
        + (f" from {split['cutoff']}" if split.get("cutoff") else "")
        + shares
    )
    if split.get("warning"):
        out.print(f"[yellow]warning:[/] {escape(split['warning'])}")


def version_detail(info: ModelVersionInfo) -> None:
    aliases = f" [green]{', '.join(info.aliases)}[/]" if info.aliases else ""
    out.print(
        f"[bold]{info.model} v{info.version}[/]{aliases} — {info.task}, {info.estimator}, "
        f"trained {fmt_time(info.created_at)} in {info.duration_s:.1f}s"
    )
    table = Table(title="metrics on the test split (95% bootstrap interval)", title_justify="left")
    for column in ("metric", "value", "interval", f"baseline ({info.baseline.get('predictor')})"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    base = info.baseline.get("metrics", {})
    for name, m in info.metrics.items():
        interval = f"{fmt(m.get('low'))} – {fmt(m.get('high'))}"
        table.add_row(name, fmt(m.get("value")), interval, fmt(base.get(name)))
    out.print(table)
    lineage = info.lineage
    inputs = ", ".join(f"{k} v{v}" for k, v in sorted(lineage["inputs"].items()))
    out.print(
        f"data: {lineage['training_set']} v{lineage['training_set_version']} (from {inputs}); "
        f"{lineage.get('label_rows')} label rows, without features: "
        f"{lineage.get('label_rows_without_features')}"
    )
    split_line(info.split)
    top = ", ".join(f"{k} {v:.2f}" for k, v in list(info.importance.items())[:5])
    if top:
        out.print(f"top features (share of gain): {escape(top)}")
    out.print(
        f"artifact: sha256 {info.artifact.get('digest', '')[:16]}… "
        f"({info.artifact.get('format')}, {info.artifact.get('bytes', 0):,} bytes)"
    )
    out.print(
        f"[dim]model card: gristmill models card {info.model} {info.version} "
        "--format html --out card.html[/]"
    )


def comparison(c: Comparison) -> None:
    table = Table(title=f"{c.model}: v{c.a} vs v{c.b}", title_justify="left")
    for column in ("metric", f"v{c.a}", f"v{c.b}", "delta", "intervals overlap"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in c.metrics:
        better = row["b_better"]
        delta = fmt(row["delta"])
        if better is not None:
            delta = f"[{'green' if better else 'red'}]{delta}[/]"
        overlap = {True: "yes", False: "no", None: "–"}[row["intervals_overlap"]]
        table.add_row(row["metric"], fmt(row["a"]), fmt(row["b"]), delta, overlap)
    out.print(table)
    out.print(f"training sets: v{c.training_sets['a']} vs v{c.training_sets['b']}")
    for p in c.params:
        out.print(f"param {p['param']}: {p['a']} → {p['b']}")
    if c.features_added or c.features_removed:
        out.print(f"features added: {c.features_added}, removed: {c.features_removed}")


def promotion(p: Promotion) -> None:
    before = f" (was v{p.previous_version})" if p.previous_version is not None else ""
    style = {"override": "yellow", "rollback": "cyan"}.get(p.action, "green")
    out.print(f"[{style}]{p.action}[/]: {p.model} {p.alias} → v{p.version}{before} by {p.actor}")
    for g in p.gates:
        mark = "[green]pass[/]" if g["passed"] else "[red]FAIL[/]"
        out.print(f"  {mark} {escape(g['gate'])}: {escape(g['detail'])}")


def events(model: str, rows: list[ModelEventInfo]) -> None:
    view = [
        {
            "at": e.at,
            "action": e.action,
            "alias": e.alias,
            "version": f"v{e.version}",
            "previous": f"v{e.previous_version}" if e.previous_version is not None else "",
            "actor": e.actor,
            "reason": e.reason,
            "gates": ", ".join(
                ("ok " if g["passed"] else "FAIL ") + g["gate"] for g in e.gates or []
            ),
        }
        for e in rows
    ]
    records(
        f"audit trail of {model}",
        view,
        ["at", "action", "alias", "version", "previous", "actor", "reason", "gates"],
    )


def _gates(results: list[dict[str, Any]]) -> str:
    if not results:
        return "–"
    failed = [g["gate"] for g in results if not g["passed"]]
    passed = f"{len(results) - len(failed)}/{len(results)} passed"
    return passed + (f"; failed: {', '.join(failed)}" if failed else "")


def scored(r: ScoreResult) -> None:
    as_of = f" as of {r.as_of:%Y-%m-%d %H:%M}" if r.as_of else ""
    positive = (
        f", {r.predicted_positive:,} above the threshold"
        if r.predicted_positive is not None
        else ""
    )
    out.print(
        f"scored {r.rows:,} rows of {r.table} v{r.table_version}{as_of} with {r.model} "
        f"v{r.model_version} into {r.predictions_table} v{r.predictions_version} "
        f"in {r.duration_s:.2f}s (mean score {fmt(r.score_mean)}{positive})"
    )
    if r.engine != "duckdb":
        out.print(f"  scored on {r.engine} ({r.engine_reason})")
