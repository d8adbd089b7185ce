"""Online serving: gristmill vs MLflow vs BentoML vs a bare Starlette floor, same model.

The churn LightGBM champion of the large example is served by:

- gristmill: ``gristmill serve churn`` with everything on: API key check, online lookup of
  the user's features in SQLite (996k users), encoding, scoring, decision, 3 reason codes
  (LightGBM contributions), Prometheus metrics and the background prediction log;
- MLflow (``mlflow models serve``, its own venv) and BentoML (``bentoml serve``, its own
  venv) scoring the same booster on a feature row sent in the request (no lookup);
- the floor: a minimal Starlette endpoint that parses the row and calls the booster.

Load: ``wrk`` (a Lua POST script) from a separate process, one server worker each,
concurrency 1 and 16, ``--duration`` seconds each after a warm-up. wrk's percentiles are
its own (it measures from when it sent each request; no coordinated-omission correction,
that is wrk2). A plain sequential Python client (httpx, keep-alive) adds per-request
latencies at concurrency 1. Everything shares this machine's 2 cores with wrk.

    python benchmarks/serving.py [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LARGE = HERE / ".data" / "large"
WORK = HERE / ".data" / "serving"
VENV_MLFLOW = HERE / ".venv-mlflow" / "bin"
VENV_BENTO = HERE / ".venv-bentoml" / "bin"
USERS = 2_000

FLOOR_APP = """
import numpy as np, orjson, lightgbm as lgb
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
booster = lgb.Booster(model_file="{model}")
async def predict(request):
    row = orjson.loads(await request.body())["row"]
    score = float(booster.predict(np.array([row], dtype=np.float64), num_threads=1)[0])
    return Response(orjson.dumps({{"score": score}}), media_type="application/json")
app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
"""

BENTO_SERVICE = """
import bentoml, numpy as np, lightgbm as lgb

@bentoml.service(workers=1)
class Churn:
    def __init__(self) -> None:
        self.booster = lgb.Booster(model_file="{model}")

    @bentoml.api
    def predict(self, row: list[float]) -> float:
        return float(self.booster.predict(np.array([row], dtype=np.float64), num_threads=1)[0])
"""

NO_REASONS = """

churn_no_reasons = gm.service(
    "churn_no_reasons", model="churn", alias="champion", lookups=["user_profile"],
    policy=gm.decision({"retention_offer": 0.3, "watch": 0.15}, default="none", reasons=0),
)
"""
"""The example's service without its 3 reason codes (TreeSHAP), to show what they cost."""

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{auth}
local bodies = {{{bodies}}}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, "{path}", nil, bodies[i])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, body: bytes, headers: dict[str, str], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url, content=body, headers=headers, timeout=5)
            if r.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready")


def prepare() -> None:
    """The large example built, its model trained and scored (once; not timed).

    Generating and ingesting the data is shared with ``pipeline.py`` and
    ``training_set.py``; whatever they already made is reused.
    """
    sys.path.insert(0, str(HERE))
    import pipeline

    from gristmill.workspace import Workspace

    pipeline.w_prepare("large")  # generates and ingests the large example once
    ws = Workspace.open(LARGE)
    outcome = ws.run(["+churn"])
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    if ws.lake.latest_version("churn__predictions") is None:
        ws.models.score("churn", table="user_profile", model="latest")
    ws.close()


def setup() -> dict:
    """Export the champion's booster and rows; create an API key (not timed)."""
    from gristmill.execution.ml.features import RowEncoder
    from gristmill.workspace import Workspace

    WORK.mkdir(parents=True, exist_ok=True)
    prepare()
    # the current example's definitions (the service), on the data prepared before
    template = ROOT / "src/gristmill/examples/churn/project"
    shutil.copy(template / "pipeline.py", LARGE / "pipeline.py")
    with open(LARGE / "pipeline.py", "a") as module:  # the same service without reason codes
        module.write(NO_REASONS)
    ws = Workspace.open(LARGE)
    ws.sync_online()
    if "champion" not in ws.catalog.aliases("churn"):
        ws.models.promote("churn", "latest", reason="serving benchmark")
    loaded = ws.models.load("churn", "champion")
    model_file = WORK / "churn.txt"
    model_file.write_bytes(ws.artifacts.get(loaded.manifest.artifact))
    users = sorted(ws.read("churn__predictions", columns=["user_id"])["user_id"].to_pylist())
    step = max(1, len(users) // USERS)
    users = users[::step][:USERS]
    encoder = RowEncoder(loaded.manifest.features)
    rows, kept = [], []
    for user, features in zip(users, ws.lookup("user_profile", users), strict=True):
        assert features is not None
        row = encoder.encode(features)[0]
        if (row == row).all():  # MLflow's pandas path rejects missing values sent as null
            rows.append([float(v) for v in row])
            kept.append(user)
    users = kept
    token = ws.tokens.create("service", "serving benchmark").token
    ws.close()
    return {
        "model": str(model_file),
        "users": users,
        "rows": rows,
        "columns": [f.name for f in loaded.manifest.features],
        "token": token,
        "version": loaded.version,
    }


def _save_mlflow_model(model: str, into: Path) -> None:
    subprocess.run(
        [
            str(VENV_MLFLOW / "python"),
            "-c",
            "import sys, lightgbm as lgb, mlflow.lightgbm as ml; "
            "ml.save_model(lgb.Booster(model_file=sys.argv[1]), sys.argv[2])",
            model,
            str(into),
        ],
        check=True,
        capture_output=True,
    )


def _gristmill(service: str, py: str, bodies: list[str], auth: dict[str, str]) -> dict:
    return {
        "cmd": lambda p: [
            py,
            "-m",
            "gristmill",
            "serve",
            service,
            "-p",
            str(LARGE),
            "--port",
            str(p),
        ],
        "path": f"/v1/services/{service}/predict",
        "bodies": bodies,
        "headers": auth,
        "cwd": ROOT,
    }


def contenders(ctx: dict, wanted: set[str]) -> dict[str, dict]:
    """Every contender's command; only the ``wanted`` ones need their peer's venv."""
    tmp = Path(tempfile.mkdtemp(prefix="gm-serve-"))
    (tmp / "floor.py").write_text(FLOOR_APP.format(model=ctx["model"]))
    (tmp / "bento_service.py").write_text(BENTO_SERVICE.format(model=ctx["model"]))
    mlflow_model = tmp / "mlflow_model"
    if "mlflow" in wanted:
        _save_mlflow_model(ctx["model"], mlflow_model)
    auth = {"Authorization": f"Bearer {ctx['token']}"}
    gm_bodies = [json.dumps({"entity": {"user_id": u}}) for u in ctx["users"]]
    row_bodies = [json.dumps({"row": r}) for r in ctx["rows"]]
    mlflow_bodies = [
        json.dumps({"dataframe_split": {"columns": ctx["columns"], "data": [r]}})
        for r in ctx["rows"]
    ]
    py = sys.executable
    return {
        "gristmill": _gristmill("churn", py, gm_bodies, auth),
        "gristmill-no-reasons": _gristmill("churn_no_reasons", py, gm_bodies, auth),
        "floor": {
            "cmd": lambda p: [
                py,
                "-m",
                "uvicorn",
                "floor:app",
                "--port",
                str(p),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
            ],
            "path": "/predict",
            "bodies": row_bodies,
            "headers": {},
            "cwd": tmp,
        },
        "mlflow": {
            "cmd": lambda p: [
                str(VENV_MLFLOW / "mlflow"),
                "models",
                "serve",
                "-m",
                str(mlflow_model),
                "--env-manager",
                "local",
                "--port",
                str(p),
                "--workers",
                "1",
            ],
            "path": "/invocations",
            "bodies": mlflow_bodies,
            "headers": {},
            "cwd": tmp,
        },
        "bentoml": {
            "cmd": lambda p: [
                str(VENV_BENTO / "bentoml"),
                "serve",
                "bento_service:Churn",
                "--port",
                str(p),
            ],
            "path": "/predict",
            "bodies": row_bodies,
            "headers": {},
            "cwd": tmp,
        },
    }


def wrk(
    url: str, path: str, bodies: list[str], headers: dict[str, str], conns: int, seconds: int
) -> dict:
    auth = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    quoted = ", ".join(json.dumps(b) for b in bodies[:500])
    script = Path(tempfile.mktemp(suffix=".lua"))
    script.write_text(LUA.format(auth=auth, bodies=quoted, path=path))
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(conns),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()

    def ms(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": ms("50%"),
        "p99": ms("99%"),
        "non2xx": int(errors.group(1)) if errors else 0,
    }


def sequential(url: str, bodies: list[str], headers: dict[str, str], n: int = 3000) -> dict:
    import httpx

    times = []
    with httpx.Client(headers={**headers, "Content-Type": "application/json"}) as client:
        for i in range(n):
            start = time.perf_counter()
            r = client.post(url, content=bodies[i % len(bodies)])
            times.append((time.perf_counter() - start) * 1000)
            assert r.status_code == 200, r.text
    times.sort()
    return {"p50": statistics.median(times), "p99": times[int(len(times) * 0.99)]}


def measure(name: str, spec: dict, seconds: int) -> dict:
    port = free_port()
    command = spec["cmd"](port)
    # peers start helpers (uvicorn, gunicorn) by name: their venv's bin comes first
    path = f"{Path(command[0]).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PYTHONPATH": str(spec["cwd"]), "PATH": path}
    proc = subprocess.Popen(
        command,
        cwd=spec["cwd"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(
            url + spec["path"],
            spec["bodies"][0].encode(),
            {**spec["headers"], "Content-Type": "application/json"},
        )
        wrk(url, spec["path"], spec["bodies"], spec["headers"], 4, 3)  # warm-up
        result = {
            "c1": wrk(url, spec["path"], spec["bodies"], spec["headers"], 1, seconds),
            "c16": wrk(url, spec["path"], spec["bodies"], spec["headers"], 16, seconds),
            "plain": sequential(url + spec["path"], spec["bodies"], spec["headers"]),
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print(name, result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--only", default="")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prepare", action="store_true", help="only build what it needs")
    args = parser.parse_args()
    if args.prepare:
        return prepare()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    ctx = setup()
    everyone = ["gristmill", "gristmill-no-reasons", "floor", "mlflow", "bentoml"]
    names = [n for n in everyone if not args.only or n in args.only.split(",")]
    specs = contenders(ctx, set(names))
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(args.rounds):  # interleaved, so a noisy minute hits every contender
        for name in names:
            rounds[name].append(measure(name, specs[name], args.duration))
    results = {name: median_of(runs) for name, runs in rounds.items()}
    for name, result in results.items():
        print("median", name, result, flush=True)
    if set(results) == set(everyone):  # a partial run (--only) does not replace the section
        write(results, ctx, args.duration, args.rounds, rounds)


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over the rounds (non-2xx: the total)."""
    out: dict = {}
    for level in runs[0]:
        out[level] = {
            key: sum(r[level][key] for r in runs)
            if key == "non2xx"
            else statistics.median(r[level][key] for r in runs)
            for key in runs[0][level]
        }
    return out


def write(results: dict, ctx: dict, seconds: int, rounds: int, runs: dict) -> None:
    sys.path.insert(0, str(HERE))
    from results import write_section

    g = results["gristmill"]
    rows = []
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['c1']['rps']:,.0f} | {r['c1']['p50']:.2f} | {r['c1']['p99']:.2f} | "
            f"{r['plain']['p50']:.2f} | {r['plain']['p99']:.2f} | {r['c16']['rps']:,.0f} | "
            f"{r['c16']['p50']:.2f} | {r['c16']['p99']:.2f} | "
            f"{r['c1']['non2xx'] + r['c16']['non2xx']} |"
        )
    ratios = []
    for peer in ("mlflow", "bentoml"):
        if peer in results:
            ratios.append(
                f"- throughput vs {peer}: {g['c1']['rps'] / results[peer]['c1']['rps']:.1f}x at "
                f"concurrency 1, {g['c16']['rps'] / results[peer]['c16']['rps']:.1f}x at 16"
            )
    if "floor" in results:
        f = results["floor"]
        ratios.append(
            f"- throughput vs the floor: {g['c1']['rps'] / f['c1']['rps']:.2f}x at concurrency 1, "
            f"{g['c16']['rps'] / f['c16']['rps']:.2f}x at 16 (target: at least 0.8x)"
        )
        if "gristmill-no-reasons" in results:
            n = results["gristmill-no-reasons"]
            ratios.append(
                f"- without reason codes (the same service, `reasons=0`): "
                f"{n['c1']['rps'] / f['c1']['rps']:.2f}x the floor at concurrency 1, "
                f"{n['c16']['rps'] / f['c16']['rps']:.2f}x at 16: the 3 reason codes (LightGBM's "
                f"exact TreeSHAP over every tree) cost "
                f"{1 - g['c16']['rps'] / n['c16']['rps']:.0%} of the throughput at 16"
            )
        ratios.append(
            f"- p50 at concurrency 1 vs the floor: {g['c1']['p50'] / f['c1']['p50']:.1f}x "
            f"(wrk), {g['plain']['p50'] / f['plain']['p50']:.1f}x (plain client)"
        )
    for name in ("gristmill", "gristmill-no-reasons", "floor"):
        if name in runs:
            ratios.append(
                f"- {name} req/s per round, c=1: "
                + ", ".join(f"{r['c1']['rps']:,.0f}" for r in runs[name])
                + "; c=16: "
                + ", ".join(f"{r['c16']['rps']:,.0f}" for r in runs[name])
                + "; p99 c=1 (ms): "
                + ", ".join(f"{r['c1']['p99']:.2f}" for r in runs[name])
            )
    ratios.append(
        f"- gristmill p99 at concurrency 1: {g['c1']['p99']:.2f} ms (wrk), "
        f"{g['plain']['p99']:.2f} ms (plain client); target: at most 1.5 ms by wrk"
    )
    body = f"""## Online serving (`benchmarks/serving.py`)

The large example's churn LightGBM v{ctx["version"]} (150 trees, 18 features), one server
worker each, {seconds} s per load level after a 3 s warm-up, on the same 2 cores as the load
generator; {rounds} rounds with the contenders interleaved, medians shown. gristmill does
everything a production request needs: API key check, online lookup of the user's profile
(SQLite, 996k users), encoding, scoring, decision, 3 reason codes, metrics and the
prediction log (each answer written to the worker's spool file before the response; the
drainer process commits it to Delta). MLflow, BentoML and the floor only score a feature
row sent in the request; `gristmill-no-reasons` is the same service without reason codes.
Latencies in ms: wrk's own percentiles (not corrected for
coordinated omission), and a plain sequential client's per-request times.

| server | req/s c=1 | p50 | p99 | plain p50 | plain p99 | req/s c=16 | p50 | p99 | non-2xx |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

{chr(10).join(ratios)}
"""
    write_section("serving", body)
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
