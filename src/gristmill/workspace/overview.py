"""Whole-project views for the UI and the API: one lineage graph, one audit trail."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from gristmill.definitions.models import Model
from gristmill.definitions.objects import Table
from gristmill.workspace.shapes import AuditEvent, GraphNode, ProjectGraph

if TYPE_CHECKING:
    from gristmill.workspace.core import Workspace

STATUS = {"run": "stale", "skip": "fresh"}


def project_graph(ws: Workspace, focus: str | None = None, hops: int | None = None) -> ProjectGraph:
    """Sources -> tables -> feature views -> training sets -> models -> services ->
    monitors, each with its status and latest version; ``focus`` and ``hops`` keep the
    nodes at most ``hops`` edges away from ``focus`` (either direction)."""
    plan = {step.name: step for step in ws.plan().steps}
    nodes: dict[str, GraphNode] = {}
    edges: list[list[str]] = []
    for name in ws.graph.order:
        node = ws.graph.nodes[name]
        kind = "source" if node.kind.value == "ingest" else node.kind.value
        if isinstance(node, Table) and node.feature is not None:
            kind = "feature_view"
        last = ws.catalog.latest(name)
        step = plan.get(name)
        failed = ws.catalog.reader().latest_step(name)
        status = "never" if last is None else "unknown"
        if last is not None and step is not None:
            status = STATUS.get(step.action.value, "unknown")
        if failed is not None and failed.status == "failed":
            status = "failed"
        href = f"/models/{name}" if isinstance(node, Model) else f"/tables/{name}"
        nodes[name] = GraphNode(
            id=name,
            label=name,
            kind=kind,
            status=status,
            version=last.version if last else None,
            href=href,
        )
        edges += [[dep, name] for dep in node.dependencies]
    for service in ws.project.services.values():
        sid = f"service:{service.name}"
        versions = ws.catalog.aliases(service.model)
        nodes[sid] = GraphNode(
            id=sid,
            label=service.name,
            kind="service",
            status="fresh" if service.alias in versions else "never",
            version=versions.get(service.alias),
            href=f"/models/{service.model}",
        )
        edges.append([service.model, sid])
    for monitor in ws.project.monitors.values():
        mid = f"monitor:{monitor.name}"
        subject = monitor.subject
        source = f"service:{subject}" if f"service:{subject}" in nodes else subject
        results = ws.catalog.monitor_results(monitor.name)
        last_id = results[-1].evaluation_id if results else None
        alerting = any(r.state == "alert" for r in results if r.evaluation_id == last_id)
        nodes[mid] = GraphNode(
            id=mid,
            label=monitor.name,
            kind="monitor",
            status="never" if not results else ("failed" if alerting else "fresh"),
            version=None,
            href=f"/monitors/{monitor.name}",
        )
        if source in nodes:
            edges.append([source, mid])
    total = len(nodes)
    if focus is not None:
        if focus not in nodes:
            ws.graph.get(focus)  # raises, naming what there is
        keep = _near(focus, edges, hops if hops is not None else 2)
        nodes = {k: v for k, v in nodes.items() if k in keep}
        edges = [e for e in edges if e[0] in keep and e[1] in keep]
    return ProjectGraph(list(nodes.values()), edges, focus, total)


def _near(focus: str, edges: list[list[str]], hops: int) -> set[str]:
    around: dict[str, set[str]] = {}
    for a, b in edges:
        around.setdefault(a, set()).add(b)
        around.setdefault(b, set()).add(a)
    seen = {focus}
    queue = deque([(focus, 0)])
    while queue:
        name, depth = queue.popleft()
        if depth == hops:
            continue
        for other in around.get(name, ()):
            if other not in seen:
                seen.add(other)
                queue.append((other, depth + 1))
    return seen


def audit(ws: Workspace, limit: int = 200) -> list[AuditEvent]:
    """The audit trail, newest first: every model's alias moves, refusals, pending
    promotions and retrains, and every erasure (its subject as a digest)."""
    events: list[AuditEvent] = []
    for model in sorted(set(ws.catalog.model_names())):
        for e in ws.catalog.model_events(model):
            moved = f"{e.alias} → v{e.version}" if e.alias else f"v{e.version}"
            before = f" (was v{e.previous_version})" if e.previous_version is not None else ""
            events.append(
                AuditEvent(
                    at=e.at,
                    actor=e.actor,
                    action=e.action,
                    subject=f"model {model}",
                    detail=moved + before,
                    reason=e.reason,
                    gates=list(e.gates or []),
                )
            )
    for r in ws.catalog.erasures():
        events.append(
            AuditEvent(
                at=r.at,
                actor=r.actor,
                action="erase",
                subject=f"{r.column_name}=<{r.subject[:12]}…>",
                detail=", ".join(str(t.get("table", "")) for t in r.details.get("tables", [])),
            )
        )
    events.sort(key=lambda e: e.at, reverse=True)
    return events[:limit]
