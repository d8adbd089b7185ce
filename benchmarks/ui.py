"""The web UI and REST API under a big catalog, and a 500-node lineage in Chromium.

(a) The churn example at ``--scale`` (large: 1M users, 10M transactions, 20M events),
built once, with its catalog grown to ``--runs`` runs and ``--versions`` versions of the
churn model (copies of the real run's and version 1's records: the pages read the
catalog, not the artifacts). ``gristmill ui`` runs in its own process; each page and API
call is requested ``--requests`` times after one warm-up; the server's own time (its
``server-timing`` header) gives the p50/p95, next to the client's round trip.

(b) A generated project of 500 tables (20 sources, 480 SQL steps reading one or two
earlier ones): ``/lineage`` opened in Debian's Chromium (Playwright), timed from the
navigation's start to the drawn graph (``data-ready``), with dagre's layout and the SVG
drawing apart.

No peer is measured: Dagster's UI renders the asset graph through GraphQL and React; its
issue dagster#20634 reports it hanging at 200 assets, which this machine cannot serve as
a fair comparison without its webserver's full stack (left out, named in RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
sys.path.insert(0, str(HERE))

from results import write_section  # noqa: E402

GM = [sys.executable, "-m", "gristmill"]
PAGES = [
    "/lineage",
    "/runs",
    "/tables",
    "/tables/user_profile",
    "/models",
    "/models/churn",
    "/models/churn/compare?a=1&b=2",
    "/monitors",
    "/monitors/churn_drift",
    "/schedules",
    "/sql",
    "/audit",
]
API = [
    "/api/v1/tables",
    "/api/v1/status",
    "/api/v1/lineage",
    "/api/v1/runs?limit=200",
    "/api/v1/models",
    "/api/v1/models/churn/versions/1",
    "/api/v1/monitors",
    "/api/v1/tables/user_profile/versions",
    "/api/v1/tables/user_profile/sample?limit=20",
    "/api/v1/audit",
    "/api/v1/schedules",
    "/api/v1/sources",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(root: Path, scale: str) -> None:
    from gristmill.workspace import Workspace
    from gristmill.workspace.init import init_project

    if (root / ".gristmill" / "bench-built").exists():
        return
    if root.exists():
        import shutil

        shutil.rmtree(root)
    clock = time.perf_counter()
    init_project(root, example="churn", scale=scale, seed=1)
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    ws.models.promote("churn", 1, force=True, reason="benchmark")
    ws.models.score("churn", table="user_profile")
    ws.monitors.run()
    ws.close()
    (root / ".gristmill" / "bench-built").write_text(f"{time.perf_counter() - clock:.0f}")


def grow_catalog(root: Path, runs: int, versions: int) -> dict[str, int]:
    """Copies of the real build run and of model version 1 until the catalog holds
    ``runs`` runs and ``versions`` versions of churn."""
    from sqlalchemy import func, insert, select

    from gristmill.storage.catalog import schema as s
    from gristmill.workspace import Workspace

    ws = Workspace.open(root)
    catalog = ws.catalog
    with catalog._write() as conn:
        have = conn.execute(select(func.count()).select_from(s.runs)).scalar_one()
        template = dict(
            conn.execute(select(s.runs).where(s.runs.c.kind == "build")).mappings().first()
        )
        rows = []
        for i in range(max(0, runs - have)):
            row = dict(
                template, run_id=uuid.uuid4().hex, status=["success", "noop", "failed"][i % 3]
            )
            rows.append(row)
        if rows:
            conn.execute(insert(s.runs), rows)
        mv = s.model_versions
        first = dict(
            conn.execute(select(mv).where(mv.c.model == "churn", mv.c.version == 1))
            .mappings()
            .one()
        )
        first.pop("id", None)  # a key of its own per row
        top = conn.execute(select(func.max(mv.c.version)).where(mv.c.model == "churn")).scalar_one()
        copies = [dict(first, version=v) for v in range(top + 1, versions + 1)]
        if copies:
            conn.execute(insert(mv), copies)
        total_runs = conn.execute(select(func.count()).select_from(s.runs)).scalar_one()
        total_versions = conn.execute(
            select(func.count()).select_from(mv).where(mv.c.model == "churn")
        ).scalar_one()
    ws.close()
    return {"runs": total_runs, "versions": total_versions}


def admin_key(root: Path) -> str:
    from gristmill.workspace import Workspace

    ws = Workspace.open(root)
    key = ws.tokens.create("admin", "benchmark").token
    ws.close()
    return key


class Server:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [*GM, "ui", "--port", str(self.port), "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    self.process.stderr.read().decode() if self.process.stderr else ""
                )
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def p95(values: list[float]) -> float:
    return (
        statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]
    )


def measure(server: Server, key: str, n: int) -> list[dict[str, Any]]:
    import httpx

    import re

    client = httpx.Client(base_url=server.url, timeout=120)
    token = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    login = client.post("/login", data={"key": key, "next": "/runs", "login_token": token[1]})
    assert login.status_code == 303, login.text
    out = []
    for path in PAGES + API:
        headers = {"Authorization": f"Bearer {key}"} if path.startswith("/api/") else {}
        server_ms, client_ms = [], []
        for i in range(n + 1):
            clock = time.perf_counter()
            r = client.get(path, headers=headers)
            elapsed = (time.perf_counter() - clock) * 1000
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            if i == 0:
                continue  # the warm-up: imports, the first read of a version
            timing = r.headers.get("server-timing", "")
            server_ms.append(float(timing.split("dur=")[1]) if "dur=" in timing else elapsed)
            client_ms.append(elapsed)
        out.append(
            {
                "path": path,
                "p50": statistics.median(server_ms),
                "p95": p95(server_ms),
                "client_p50": statistics.median(client_ms),
                "bytes": len(r.content),
            }
        )
    client.close()
    return out


def generated_project(root: Path, nodes: int) -> None:
    import random

    if (root / "gristmill.toml").exists():
        return
    rng = random.Random(7)
    (root / "sql").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "x.csv").write_text("id,v\n1,2\n")
    (root / "gristmill.toml").write_text('name = "big"\n')
    sources = [f"src_{i:02d}" for i in range(20)]
    lines = ["import gristmill as gm\n"]
    lines += [
        f'{s} = gm.source("{s}", "data/x.csv", columns={{"id": "BIGINT", "v": "BIGINT"}})'
        for s in sources
    ]
    (root / "pipeline.py").write_text("\n".join(lines) + "\n")
    names = list(sources)
    for i in range(nodes - len(sources)):
        name = f"t_{i:03d}"
        picks = rng.sample(names[-60:], k=min(len(names[-60:]), rng.choice([1, 1, 2])))
        body = " UNION ALL ".join(f"SELECT id, v FROM {p}" for p in picks)
        (root / "sql" / f"{name}.sql").write_text(body + "\n")
        names.append(name)


def lineage_in_chromium(root: Path, key: str, repeats: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    server = Server(root)
    try:
        results = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for _ in range(repeats + 1):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(server.url + "/login")
                page.fill("input[name=key]", key)
                page.click("button[type=submit]")
                page.wait_for_url("**/lineage")
                clock = time.perf_counter()
                page.goto(server.url + "/lineage")
                page.wait_for_selector("#lineage svg[data-ready='1']", timeout=60_000)
                wall = (time.perf_counter() - clock) * 1000
                svg = page.query_selector("#lineage svg")
                assert svg is not None
                nodes = int(svg.get_attribute("data-nodes") or 0)
                results.append(
                    {
                        "wall_ms": wall,
                        "layout_ms": float(svg.get_attribute("data-layout-ms") or "nan"),
                        "render_ms": float(svg.get_attribute("data-render-ms") or "nan"),
                        "ready_ms": page.evaluate("() => performance.now()"),
                        "nodes": nodes,
                    }
                )
                page.close()
            browser.close()
        results = results[1:]
        return {
            k: statistics.median(r[k] for r in results)
            for k in ("wall_ms", "layout_ms", "render_ms", "ready_ms")
        } | {"nodes": results[0]["nodes"], "repeats": len(results)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="large", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=500)
    args = parser.parse_args()
    os.environ.setdefault("GRISTMILL_PII_KEY", "benchmark")

    root = DATA / f"ui-{args.scale}"
    clock = time.perf_counter()
    build(root, args.scale)
    print(f"built {args.scale} example in {time.perf_counter() - clock:.0f} s", flush=True)
    sizes = grow_catalog(root, args.runs, args.versions)
    key = admin_key(root)
    server = Server(root)
    try:
        rows = measure(server, key, args.requests)
    finally:
        server.stop()
    for r in rows:
        print(f"{r['path']:50s} p50 {r['p50']:7.1f}  p95 {r['p95']:7.1f} ms", flush=True)

    big = DATA / f"ui-lineage-{args.nodes}"
    generated_project(big, args.nodes)
    lineage = lineage_in_chromium(big, admin_key(big), repeats=5)
    print(lineage, flush=True)

    worst = max(rows, key=lambda r: r["p95"])
    table = "\n".join(
        f"| `{r['path']}` | {r['p50']:.1f} | {r['p95']:.1f} | {r['client_p50']:.1f} | {r['bytes']:,} |"
        for r in rows
    )
    met = "met" if worst["p95"] <= 100 else "NOT met"
    body = f"""## UI and REST API (`benchmarks/ui.py`)

### (a) Every page and API call on the {args.scale} example, {sizes["runs"]:,} runs and {sizes["versions"]} model versions in the catalog

`gristmill ui` in its own process (one uvicorn worker); each path requested {args.requests} times after a warm-up, one at a time. Server = the app's own time (`server-timing`), client = the round trip over loopback (httpx). The runs and model versions past the real ones are copies of the real build run's and of version 1's catalog records.

| path | server p50 ms | server p95 ms | client p50 ms | bytes |
|---|---:|---:|---:|---:|
{table}

Slowest p95: `{worst["path"]}` at {worst["p95"]:.1f} ms (target ≤ 100 ms at the 95th percentile: {met}).

### (b) A generated project of {lineage["nodes"]} nodes: `/lineage` in Chromium

Debian's Chromium through Playwright, {lineage["repeats"]} fresh pages (medians): from `goto` to the drawn graph {lineage["wall_ms"]:.0f} ms (of which dagre's layout {lineage["layout_ms"]:.0f} ms and drawing the SVG {lineage["render_ms"]:.0f} ms); the page's own clock at `data-ready`: {lineage["ready_ms"]:.0f} ms. Target ≤ 1 s: {"met" if lineage["wall_ms"] <= 1000 else "NOT met"}.

No peer ran: Dagster's webserver (its asset graph is reported to hang at 200 assets, dagster#20634) needs its GraphQL server and a Dagster definitions module for the same 500 assets; that comparison is left for a later run.
"""
    write_section("ui", body)


if __name__ == "__main__":
    main()
