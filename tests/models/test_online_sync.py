"""Feature views kept online by every run: incremental, and equal to the batch features."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gristmill.workspace import Workspace
from tests.conftest import REDIS, drop_redis_keys, write_project
from tests.models.test_training_set import ACTIVITY, LABELS, MODULE, PROFILE

FUTURE = """
future_labels = gm.source(
    "future_labels", "data/future.csv",
    columns={"user_id": "VARCHAR", "label_ts": "TIMESTAMP", "y": "INTEGER"},
)
future = gm.training_set(
    "future", labels="future_labels", entity="user_id", timestamp="label_ts", label="y",
    features=[gm.features("profile")],
)
"""
FUTURE_CSV = "user_id,label_ts,y\nu1,2030-01-01 00:00:00,1\nu2,2030-01-01 00:00:00,0\n"


@pytest.fixture(params=["sqlite", "redis"])
def ws(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    name = f"o{uuid.uuid4().hex[:8]}"
    online = "" if request.param == "sqlite" else f'online_store = "{REDIS}"\n'
    root = write_project(
        tmp_path / "p",
        module=MODULE + FUTURE,
        sql={},
        data={
            "labels.csv": LABELS,
            "profile.csv": PROFILE,
            "activity.csv": ACTIVITY,
            "future.csv": FUTURE_CSV,
        },
        toml=f'name = "{name}"\n{online}',
    )
    ws = Workspace.open(root)
    yield ws
    ws.close()
    if request.param == "redis":
        drop_redis_keys(name)


def _synced(outcome) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {o["view"]: o for o in outcome.summary()["online"]}


def test_online_features_equal_batch_features_at_the_same_time(ws: Workspace) -> None:
    outcome = ws.run()
    assert outcome.ok
    assert _synced(outcome)["profile"]["mode"] == "full"
    assert _synced(outcome)["profile"]["rows"] == 2
    batch = {r["user_id"]: r for r in ws.read("future").to_pylist()}
    online = dict(zip(["u1", "u2", "u3"], ws.lookup("profile", ["u1", "u2", "u3"]), strict=True))
    assert online["u3"] is None
    for user in ("u1", "u2"):
        row = online[user]
        assert row is not None
        assert row["spend"] == batch[user]["spend"]
        assert row["plan"] == batch[user]["plan"]
        assert row["ts"] == batch[user]["profile__ts"].strftime("%Y-%m-%d %H:%M:%S")
    assert online["u1"]["spend"] == 999.0 and online["u1"]["ts"] == "2026-04-02 00:00:00"


def test_later_runs_write_only_changed_entities(ws: Workspace) -> None:
    assert ws.run().ok
    assert _synced(ws.run()) == {}  # nothing changed: nothing written
    changed = PROFILE.replace("u2,2026-03-05 00:00:00,999", "u2,2026-03-05 00:00:00,123")
    changed += "u4,2026-01-01 00:00:00,7,basic\n"
    (ws.root / "data" / "profile.csv").write_text(changed)
    sync = _synced(ws.run())["profile"]
    assert (sync["mode"], sync["upserted"], sync["deleted"], sync["rows"]) == (
        "incremental",
        2,
        0,
        3,
    )
    assert ws.lookup("profile", ["u2"])[0]["spend"] == 123.0
    without_u1 = "\n".join(line for line in changed.splitlines() if not line.startswith("u1"))
    (ws.root / "data" / "profile.csv").write_text(without_u1 + "\n")
    sync = _synced(ws.run())["profile"]
    assert (sync["upserted"], sync["deleted"], sync["rows"]) == (0, 1, 2)
    assert ws.lookup("profile", ["u1", "u4"])[0] is None


def test_an_emptied_store_is_filled_again(ws: Workspace) -> None:
    assert ws.run().ok
    store = ws.online_store
    if hasattr(store, "client"):
        keys = list(store.client.scan_iter(match=f"{store.prefix}*"))
        store.client.delete(*keys)
    else:
        store.close()
        store.path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(store.path) + suffix).unlink(missing_ok=True)
        ws.__dict__.pop("online_store")
    sync = _synced(ws.run())["profile"]
    assert (sync["mode"], sync["upserted"]) == ("full", 2)
    assert ws.lookup("profile", ["u1"])[0]["spend"] == 999.0


def test_a_view_whose_synced_version_lost_its_files_is_synced_in_full(ws: Workspace) -> None:
    """The sync used to diff against the synced version even when its Parquet files were
    deleted, so every later run failed and the store was never updated again."""
    assert ws.run().ok
    for part in (ws.root / "lake" / "profile").glob("*.parquet"):
        part.unlink()
    outcome = ws.run(["profile"], full_refresh=True)
    assert outcome.ok, [s.error for s in outcome.result.steps if s.error]
    assert _synced(outcome)["profile"]["mode"] == "full"
    assert ws.lookup("profile", ["u1"])[0]["spend"] == 999.0
    assert ws.run().ok
