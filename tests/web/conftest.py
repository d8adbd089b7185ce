"""A real ``gristmill ui`` process over the built churn example, with a key per role."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gristmill.definitions.config import ROLE_NAMES
from tests.conftest import built_example, spawn

STRICT = """
churn_strict = gm.model(
    "churn_strict", training_set="churn_training",
    estimator=gm.lightgbm(n_estimators=10), gates=["roc_auc >= 0.99"],
)
# alerts on any drift at all; its retrained version waits for a person's approval
approval_drift = gm.drift_monitor(
    "approval_drift", service="churn", current="churn_training", window="30d",
    thresholds={"psi": 1e-9}, on_alert=gm.retrain(approval="manual", alias="candidate"),
)
"""


@dataclass
class UiServer:
    root: Path
    url: str
    keys: dict[str, str]
    process: subprocess.Popen[str]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def wait_until_up(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="package")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    root = tmp_path_factory.mktemp("web") / "demo"
    ws = built_example(root, scale="tiny", seed=5, append=STRICT, promote=False)
    ws.models.score("churn", table="user_profile")
    ws.models.promote("churn", 1, reason="the tests' champion")
    # the monitor alerts, its retrain runs here, and the new version waits for approval
    (evaluation,) = ws.monitors.run(["approval_drift"], run_triggered=True)
    assert evaluation.state == "alert", evaluation
    (pending,) = ws.models.pending("churn")
    assert (pending.alias, pending.actor) == ("candidate", "monitor:approval_drift")
    ws.monitors.run()
    keys = {role: ws.tokens.create(role, f"{role} of the tests").token for role in ROLE_NAMES}
    ws.close()
    port = free_port()
    process = spawn(root, "ui", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, process)
    yield UiServer(root, url, keys, process)
    process.terminate()
    process.communicate(timeout=10)  # reads and closes its pipes


def logged_in(url: str, key: str) -> httpx.Client:
    """An HTTP client logged in through the login form (its token and cookie)."""
    import re

    client = httpx.Client(base_url=url)
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    done = client.post("/login", data={"key": key, "next": "/runs", "login_token": token[1]})
    assert done.status_code == 303, done.text
    return client
