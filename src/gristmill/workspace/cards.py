"""Model cards: one document per model version, as Markdown and as self-contained HTML.

Both are rendered from the same blocks (headings, paragraphs, tables), which are built
from what the registry recorded: data lineage, metrics with intervals, the baseline,
parameters, feature importance, intended use and limitations.
"""

from __future__ import annotations

import html
from typing import Any

from gristmill.workspace.shapes import ModelVersionInfo

Block = tuple[str, Any]


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def blocks(info: ModelVersionInfo) -> list[Block]:
    lineage = info.lineage
    inputs = ", ".join(f"{k} v{v}" for k, v in sorted(lineage.get("inputs", {}).items()))
    missing = lineage.get("label_rows_without_features") or {}
    out: list[Block] = [
        ("h1", f"Model card: {info.model} v{info.version}"),
        (
            "p",
            f"{info.task.capitalize()} with {info.estimator}, "
            f"trained {info.created_at:%Y-%m-%d %H:%M} UTC in {info.duration_s:.1f} s "
            f"(run {info.run_id[:8]})."
            + (f" Aliases: {', '.join(info.aliases)}." if info.aliases else ""),
        ),
        ("h2", "Intended use"),
        ("p", info.intended_use or "Not stated in the model spec."),
        ("h2", "Limitations"),
        ("p", info.limitations or "Not stated in the model spec."),
        ("h2", "Data lineage"),
        (
            "table",
            (
                ["item", "value"],
                [
                    [
                        "training set",
                        f"{lineage['training_set']} v{lineage['training_set_version']}",
                    ],
                    ["read from", inputs or "–"],
                    ["label rows", fmt(lineage.get("label_rows"))],
                    [
                        "label rows without features",
                        ", ".join(f"{k}: {v}" for k, v in missing.items()) or "0",
                    ],
                    ["code hash", str(lineage.get("code_hash", ""))[:16]],
                    ["artifact (SHA-256)", str(info.artifact.get("digest", ""))],
                    ["format", str(info.artifact.get("format", ""))],
                ],
            ),
        ),
        ("h2", "Evaluation"),
        ("p", _split_text(info.split)),
        (
            "table",
            (
                [
                    "metric",
                    "value",
                    "95% interval",
                    f"baseline ({info.baseline.get('predictor', '')})",
                ],
                [
                    [
                        name,
                        fmt(m.get("value")),
                        f"{fmt(m.get('low'))} – {fmt(m.get('high'))}",
                        fmt(info.baseline.get("metrics", {}).get(name)),
                    ]
                    for name, m in info.metrics.items()
                ],
            ),
        ),
    ]
    if info.importance:
        top = list(info.importance.items())[:15]
        out += [
            ("h2", "Feature importance"),
            ("table", (["feature", "share of gain"], [[k, f"{v:.3f}"] for k, v in top])),
        ]
    out += [
        ("h2", "Parameters"),
        ("table", (["parameter", "value"], [[k, fmt(v)] for k, v in sorted(info.params.items())])),
        ("h2", "Environment"),
        ("table", (["package", "version"], [[k, v] for k, v in info.environment.items()])),
    ]
    return out


def _split_text(split: dict[str, Any]) -> str:
    if split.get("kind") == "time":
        shares = (
            f", {split['test_share']:.1%} of the rows ({split['test_fraction']:.0%} asked)"
            if "test_share" in split
            else ""
        )
        warning = f" Warning: {split['warning']}." if split.get("warning") else ""
        return (
            f"Time split: trained on {split.get('train_rows')} rows labelled "
            f"{split.get('train_until')}, tested on {split.get('test_rows')} later rows "
            f"({split.get('test_from')}{shares}). Intervals: bootstrap percentiles over the "
            f"test rows.{warning}"
        )
    if split.get("kind") == "kfold":
        return (
            f"{split.get('folds')}-fold cross-validation over {split.get('train_rows')} rows "
            "(out-of-fold predictions); the registered model is fit on all rows."
        )
    return ""


def markdown(info: ModelVersionInfo) -> str:
    lines: list[str] = []
    for kind, value in blocks(info):
        if kind == "h1":
            lines += [f"# {value}", ""]
        elif kind == "h2":
            lines += [f"## {value}", ""]
        elif kind == "p":
            lines += [value, ""]
        else:
            header, rows = value
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            lines.append("")
    return "\n".join(lines)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:900px;margin:2rem auto;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .6rem;border-bottom:1px solid #eee;
text-align:left;font-variant-numeric:tabular-nums}th{background:#f6f6f6}
"""


def to_html(info: ModelVersionInfo) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(info.model)} v{info.version}</title><style>{_STYLE}</style>",
        "</head><body>",
    ]
    for kind, value in blocks(info):
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(value)}</{kind}>")
        else:
            header, rows = value
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header))
            for row in rows:
                cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
