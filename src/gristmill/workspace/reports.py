"""A service's monitoring report: one self-contained HTML page with inline SVG charts.

Nothing is fetched: no scripts, fonts or styles from elsewhere, so the page works
offline and can be mailed. Charts: drift (PSI) per feature over time with its
threshold, reference vs current distributions of the latest evaluation, the performance
metric over time with its interval and alert line, then alerts and the model's audit
trail (retrains, promotions, refusals).
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from gristmill.definitions.monitors import DriftMonitor, PerformanceMonitor
from gristmill.storage.catalog import MonitorResult

if TYPE_CHECKING:
    from gristmill.workspace.core import Workspace

W, H, PAD = 320, 140, 28
REF, CUR, LINE, ALERT = "#8aa4c8", "#e08a3c", "#2f5d95", "#c0392b"


def service_report(ws: Workspace, service: str) -> str:
    spec = ws.services.spec(service)
    aliases = ws.catalog.aliases(spec.model)
    monitors = ws.monitors.for_service(service)
    sections = [
        f"<h1>{_e(service)}: monitoring</h1>",
        f"<p>model <b>{_e(spec.model)}</b>, {_e(spec.alias)} "
        f"v{aliases.get(spec.alias, '—')}; {len(monitors)} monitor(s)</p>",
        _status_table(ws, [m.name for m in monitors]),
    ]
    for monitor in monitors:
        results = ws.catalog.monitor_results(monitor.name)
        if isinstance(monitor, DriftMonitor):
            sections.append(_drift_section(monitor.name, results))
        elif isinstance(monitor, PerformanceMonitor):
            sections.append(_performance_section(monitor.name, monitor.metric, results))
    alerts = [a for m in monitors for a in ws.catalog.monitor_alerts(m.name)]
    sections.append(_alerts(alerts))
    sections.append(_events(ws.catalog.model_events(spec.model)))
    return _page(f"{service} monitoring", "\n".join(sections))


def _status_table(ws: Workspace, names: list[str]) -> str:
    rows = []
    for status in ws.monitors.status():
        if status.monitor not in names:
            continue
        rows.append(
            f"<tr><td>{_e(status.monitor)}</td><td>{_e(status.type)}</td>"
            f"<td class='{_e(status.state)}'>{_e(status.state)}</td>"
            f"<td>{_e(str(status.evaluated_at or ''))[:19]}</td><td>{_e(status.summary)}</td>"
            f"<td>{status.alerts}</td></tr>"
        )
    return (
        "<h2>Monitors</h2><table><tr><th>monitor</th><th>type</th><th>state</th>"
        "<th>last evaluated</th><th>nearest its threshold</th><th>alerts</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _drift_section(name: str, results: list[MonitorResult]) -> str:
    psi = [r for r in results if r.statistic == "psi"]
    if not psi:
        return f"<h2>{_e(name)}: drift</h2><p>not evaluated yet.</p>"
    by_subject: dict[str, list[MonitorResult]] = defaultdict(list)
    for r in psi:
        by_subject[r.subject].append(r)
    last_id = psi[-1].evaluation_id
    ordered = sorted(
        by_subject, key=lambda s: -(by_subject[s][-1].value or 0) if s != "score" else -1e9
    )
    over_time = "".join(
        _figure(
            subject,
            _line_chart(
                [(_when(r), r.value) for r in by_subject[subject]],
                threshold=by_subject[subject][-1].threshold,
            ),
        )
        for subject in ordered
    )
    latest = [r for r in psi if r.evaluation_id == last_id]
    distributions = "".join(
        _figure(
            f"{r.subject} (PSI {r.value:.3f})" if r.value is not None else r.subject,
            _bars((r.details or {}).get("chart") or {}),
        )
        for r in sorted(latest, key=lambda r: -(r.value or 0))
        if (r.details or {}).get("chart")
    )
    return (
        f"<h2>{_e(name)}: drift (PSI) per feature over time</h2>"
        f"<div class='grid'>{over_time}</div>"
        f"<h2>{_e(name)}: reference vs current, latest evaluation</h2>"
        f"<p><span class='key' style='background:{REF}'></span> reference (training set) "
        f"<span class='key' style='background:{CUR}'></span> current window</p>"
        f"<div class='grid'>{distributions}</div>"
    )


def _performance_section(name: str, metric: str, results: list[MonitorResult]) -> str:
    values = [r for r in results if r.subject == metric and r.statistic == "value"]
    if not values:
        return f"<h2>{_e(name)}: {metric}</h2><p>no labelled predictions yet.</p>"
    points = [(_when(r), r.value) for r in values]
    bands = [((r.details or {}).get("low"), (r.details or {}).get("high")) for r in values]
    chart = _line_chart(points, threshold=values[-1].threshold, bands=bands, below_alerts=True)
    return f"<h2>{_e(name)}: {_e(metric)} over time (95% interval)</h2>" + _figure(metric, chart)


def _alerts(alerts: list[Any]) -> str:
    if not alerts:
        return "<h2>Alerts</h2><p>none.</p>"
    rows = "".join(
        f"<tr><td>{_e(str(a.at)[:19])}</td><td>{_e(a.monitor)}</td><td>{_e(a.action)}</td>"
        f"<td>{_e(a.message)}</td></tr>"
        for a in sorted(alerts, key=lambda a: a.at)
    )
    return (
        "<h2>Alerts</h2><table><tr><th>at</th><th>monitor</th><th>what followed</th>"
        f"<th>message</th></tr>{rows}</table>"
    )


def _events(events: list[Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(str(e.at)[:19])}</td><td>{_e(e.action)}</td><td>{_e(e.alias or '')}</td>"
        f"<td>v{e.version}</td><td>{_e(e.actor)}</td><td>{_e(e.reason)}</td></tr>"
        for e in events
    )
    return (
        "<h2>Audit trail</h2><table><tr><th>at</th><th>action</th><th>alias</th>"
        f"<th>version</th><th>actor</th><th>reason</th></tr>{rows}</table>"
    )


def _line_chart(
    points: list[tuple[str, float | None]],
    *,
    threshold: float | None,
    bands: list[tuple[float | None, float | None]] | None = None,
    below_alerts: bool = False,
) -> str:
    known = [v for _, v in points if v is not None]
    extra = [b for pair in (bands or []) for b in pair if b is not None]
    top = max([*known, *extra, threshold or 0.0, 1e-9])
    low = min([*known, *extra, threshold if threshold is not None else top, 0.0])
    span = (top - low) or 1.0

    def x(i: int) -> float:
        return PAD + (W - 2 * PAD) * (i / max(len(points) - 1, 1))

    def y(v: float) -> float:
        return H - PAD - (H - 2 * PAD) * ((v - low) / span)

    parts = [f"<svg class='chart' viewBox='0 0 {W} {H}' width='{W}' height='{H}'>"]
    parts.append(f"<line x1='{PAD}' y1='{H - PAD}' x2='{W - PAD}' y2='{H - PAD}' stroke='#999'/>")
    if bands:
        upper = [(x(i), y(hi)) for i, (_, hi) in enumerate(bands) if hi is not None]
        lower = [(x(i), y(lo)) for i, (lo, _) in enumerate(bands) if lo is not None]
        if upper and lower:
            shape = " ".join(f"{a:.1f},{b:.1f}" for a, b in [*upper, *reversed(lower)])
            parts.append(f"<polygon points='{shape}' fill='{LINE}' opacity='0.15'/>")
    if threshold is not None:
        parts.append(
            f"<line class='threshold' x1='{PAD}' y1='{y(threshold):.1f}' x2='{W - PAD}' "
            f"y2='{y(threshold):.1f}' stroke='{ALERT}' stroke-dasharray='4 3'/>"
            f"<text x='{W - PAD}' y='{y(threshold) - 3:.1f}' text-anchor='end' "
            f"fill='{ALERT}'>{threshold:g}</text>"
        )
    line = [(x(i), y(v)) for i, (_, v) in enumerate(points) if v is not None]
    if len(line) > 1:
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in line)
        parts.append(f"<polyline points='{path}' fill='none' stroke='{LINE}' stroke-width='2'/>")
    for i, (label, v) in enumerate(points):
        if v is None:
            continue
        crossed = threshold is not None and (v < threshold if below_alerts else v > threshold)
        parts.append(
            f"<circle class='point' cx='{x(i):.1f}' cy='{y(v):.1f}' r='3.5' "
            f"fill='{ALERT if crossed else LINE}'><title>{_e(label)}: {v:.4g}</title></circle>"
        )
    parts.append(
        f"<text x='{PAD}' y='{H - 8}'>{_e(points[0][0])}</text>"
        f"<text x='{W - PAD}' y='{H - 8}' text-anchor='end'>{_e(points[-1][0])}</text>"
        f"<text x='4' y='{PAD - 10}'>{top:.3g}</text></svg>"
    )
    return "".join(parts)


def bin_labels(chart: dict[str, Any]) -> list[str]:
    """The labels of a drift chart's bins: its categories, or each numeric bin's range
    (its position where the edges do not match the shares)."""
    reference = chart.get("reference") or []
    if "categories" in chart:
        return [str(c) for c in chart["categories"]]
    edges = chart.get("edges") or []
    labels = [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(edges) - 1)]
    return labels if len(labels) == len(reference) else [str(i) for i in range(len(reference))]


def _bars(chart: dict[str, Any]) -> str:
    reference, current = chart.get("reference") or [], chart.get("current") or []
    if not reference:
        return "<p>no distribution</p>"
    labels = bin_labels(chart)
    top = max([*reference, *current, 1e-9])
    n = len(reference)
    slot = (W - 2 * PAD) / n
    parts = [f"<svg class='chart' viewBox='0 0 {W} {H}' width='{W}' height='{H}'>"]
    for i in range(n):
        for j, (share, color) in enumerate(((reference[i], REF), (current[i], CUR))):
            height = (H - 2 * PAD) * share / top
            left = PAD + i * slot + j * slot / 2
            parts.append(
                f"<rect class='bar' x='{left:.1f}' y='{H - PAD - height:.1f}' "
                f"width='{max(slot / 2 - 1, 1):.1f}' height='{height:.1f}' fill='{color}'>"
                f"<title>{_e(labels[i])}: {'reference' if j == 0 else 'current'} "
                f"{share:.1%}</title></rect>"
            )
    parts.append(
        f"<text x='{PAD}' y='{H - 8}'>{_e(labels[0])}</text>"
        f"<text x='{W - PAD}' y='{H - 8}' text-anchor='end'>{_e(labels[-1])}</text></svg>"
    )
    return "".join(parts)


def _figure(title: str, svg: str) -> str:
    return f"<figure><figcaption>{_e(title)}</figcaption>{svg}</figure>"


def _when(r: MonitorResult) -> str:
    moment = r.window_end or r.evaluated_at
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ font-size: 1.2em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; }}
.alert, .error {{ color: {ALERT}; font-weight: bold; }} .ok {{ color: #1e7d3a; }}
.skipped, .never {{ color: #a07000; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; border: 1px solid #eee; padding: 6px; }}
figcaption {{ font-weight: 600; font-size: 12px; }}
svg text {{ font-size: 10px; fill: #555; }}
.key {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body>
{body}
<p style="color:#888">made by gristmill; self-contained, no network needed</p>
</body></html>
"""
