"""Batch scoring streams: scoring a 7M-row feature view needs far less memory than it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.workspace import Workspace
from tests.conftest import write_project

pytestmark = pytest.mark.slow

USERS = 1_000_000
MONTHS = 7
FEATURES = 18

COLUMNS = ",\n".join(f"    (hash(u * {i + 3} + m) % 1000) / 10.0 as f{i}" for i in range(FEATURES))
PROFILE_SQL = f"""
select 'u_' || lpad(cast(u as varchar), 7, '0') as user_id,
    timestamp '2025-12-01' + to_months(m) as as_of,
{COLUMNS}
from range({USERS}) t(u), range({MONTHS}) s(m)
"""
LABELS_SQL = f"""
select 'u_' || lpad(cast(u as varchar), 7, '0') as user_id,
    timestamp '2026-05-15' + to_days(cast(u % 20 as integer)) as label_ts,
    cast(hash(u) % 3 = 0 as integer) as y
from range(0, {USERS}, 50) t(u)
"""
MODULE = """
import gristmill as gm

profile = gm.feature_view("profile", entity="user_id", timestamp="as_of")
training = gm.training_set("training", labels="labels", entity="user_id",
                           timestamp="label_ts", label="y", features=["profile"])
m = gm.model("m", training_set="training", estimator=gm.lightgbm(n_estimators=30),
             bootstrap=20)
"""
SCORE = r"""
import json, re, sys
import gristmill as gm
ws = gm.open_project(sys.argv[1])
result = ws.models.score("m", table="profile")
# VmHWM: this process's peak RSS (ru_maxrss would include the parent's at fork)
status = open("/proc/self/status").read()
peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
print(json.dumps({"rows": result.rows, "peak_mb": peak_mb, "version": result.predictions_version}))
"""


def test_scoring_a_large_feature_view_keeps_memory_flat(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "big",
        module=MODULE,
        sql={"profile.sql": PROFILE_SQL, "labels.sql": LABELS_SQL},
        data={},
        toml='name = "big"\n[duckdb]\nmemory_limit = "600MB"\n',
    )
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    profile = ws.materialization("profile")
    assert profile.rows == USERS * MONTHS
    ws.close()
    # ~7M rows x 20 columns: about 1.2 GB as Arrow; DuckDB may hold 600 MB of it
    done = subprocess.run(
        [sys.executable, "-c", SCORE, str(root)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rows"] == USERS  # each user's latest month
    assert result["peak_mb"] < 900, result
    ws = Workspace.open(root)
    scored = ws.read("m__predictions", columns=["as_of", "model_version"])
    assert scored.num_rows == USERS
    assert set(scored["model_version"].to_pylist()) == {1}
    ws.close()
