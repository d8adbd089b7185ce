"""The online store contract, run over every backend: SQLite and a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gristmill.errors import UnknownNameError
from gristmill.storage.online import OnlineStore, SyncState, open_online_store
from tests.conftest import REDIS, drop_redis_keys


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    project = f"t{uuid.uuid4().hex[:8]}"
    url = "sqlite:///online/store.db" if request.param == "sqlite" else REDIS
    opened = open_online_store(url, tmp_path, project)
    yield opened
    opened.close()
    if request.param == "redis":
        drop_redis_keys(project)


def test_write_get_and_state(store: OnlineStore) -> None:
    assert store.state("v") is None
    assert store.get("v", ["a"]) == [None]
    store.write("v", [(["a", "b"], ['{"x":1}', '{"x":2}'])], [], SyncState("v", 3, 2), replace=True)
    assert store.get("v", ["b", "zz", "a"]) == ['{"x":2}', None, '{"x":1}']
    assert store.state("v") == SyncState("v", 3, 2)


def test_incremental_writes_upsert_and_delete(store: OnlineStore) -> None:
    store.write("v", [(["a", "b", "c"], ["1", "2", "3"])], [], SyncState("v", 0, 3), replace=True)
    store.write("v", [(["b", "d"], ["20", "4"])], ["c"], SyncState("v", 1, 3), replace=False)
    assert store.get("v", ["a", "b", "c", "d"]) == ["1", "20", None, "4"]
    assert store.state("v") == SyncState("v", 1, 3)


def test_a_full_write_replaces_every_row_and_views_are_apart(store: OnlineStore) -> None:
    store.write("v", [(["a", "b"], ["1", "2"])], [], SyncState("v", 0, 2), replace=True)
    store.write("w", [(["a"], ["other"])], [], SyncState("w", 0, 1), replace=True)
    store.write("v", [(["c"], ["3"])], [], SyncState("v", 1, 1), replace=True)
    assert store.get("v", ["a", "b", "c"]) == [None, None, "3"]
    assert store.get("w", ["a"]) == ["other"]


def test_an_unknown_scheme_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="unknown online store 'memcached'") as info:
        open_online_store("memcached://x", tmp_path, "p")
    assert "redis, sqlite" in info.value.hint
