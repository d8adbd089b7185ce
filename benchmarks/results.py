"""Write one benchmark's section of RESULTS.md, keeping the other sections."""

from __future__ import annotations

import json
import platform
import re
import resource
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Benchmark results\n\nEach section is rewritten by its script; figures are medians of the\n"
    "repeats shown, measured on the machine named in the section. These machines are noisy:\n"
    "compare ratios measured in the same run, not absolute numbers across runs.\n"
)


def machine() -> str:
    import os

    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {cores} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(
    script: str,
    name: str,
    *args: str,
    python: Path | str = sys.executable,
    timeout: float | None = None,
) -> dict:
    """Run ``w_<name>`` of a benchmark script in a fresh interpreter (``python``: a peer's
    venv); it prints one JSON line last."""
    proc = subprocess.run(
        [str(python), script, "_worker", name, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dispatch_worker(namespace: dict) -> bool:
    """In a worker process (``script _worker NAME ARGS``): run ``w_NAME(*ARGS)`` of the
    script and print its JSON; False in the parent."""
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        print(json.dumps(namespace[f"w_{sys.argv[2]}"](*sys.argv[3:])))
        return True
    return False


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_section(name: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"<!-- {name}:start -->\n{body.rstrip()}\n\n_measured {stamp} on {machine()}_\n"
        f"<!-- {name}:end -->"
    )
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
    text = (
        pattern.sub(block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    RESULTS.write_text(text)
