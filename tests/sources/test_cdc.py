"""Change data capture from PostgreSQL's log, on a cluster of the tests' own with
``wal_level = logical`` (the ``logical_pg`` fixture) and wal2json."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from deltalake import DeltaTable

from gristmill.errors import DefinitionError
from gristmill.workspace import Workspace
from tests.conftest import gm_json

TABLE = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(12, 2),
    paid boolean,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {t} (id, customer, amount, paid)
SELECT g, 'c' || (g % 7), g * 1.25, g % 2 = 0 FROM generate_series(1, 200) g;
"""


def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def orders(logical_pg: str, request: pytest.FixtureRequest) -> str:
    """A fresh ``orders`` table in a schema of its own; the test's slots dropped after."""
    schema = "s_" + format(abs(hash(request.node.name)) % 10**8, "08d")
    sql(logical_pg, f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    sql(logical_pg, TABLE.format(t=f"{schema}.orders"))
    yield f"{schema}.orders"
    for (slot,) in sql(logical_pg, "SELECT slot_name FROM pg_replication_slots"):
        sql(logical_pg, f"SELECT pg_drop_replication_slot('{slot}')")
    sql(logical_pg, f"DROP SCHEMA {schema} CASCADE")


def project(root: Path, server: str, table: str, **extra: str) -> Path:
    settings = {
        "url": f'"{server}"',
        "table": f'"{table}"',
        "primary_key": '"id"',
        "capture": '"logical"',
        **extra,
    }
    args = ",\n    ".join(f"{k}={v}" for k, v in settings.items())
    root.mkdir(parents=True, exist_ok=True)
    (root / "gristmill.toml").write_text('name = "cdc"\n')
    (root / "pipeline.py").write_text(
        "import gristmill as gm\n\n"
        + textwrap.dedent(f'orders = gm.database_source(\n    "orders",\n    {args},\n)\n')
    )
    return root


def source_rows(url: str, table: str) -> dict[int, tuple[object, ...]]:
    rows = sql(url, f"SELECT id, customer, amount, paid FROM {table}")
    return {int(i): (c, a, p) for i, c, a, p in rows}


def lake_rows(ws: Workspace) -> dict[int, tuple[object, ...]]:
    table = ws.read("orders")
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), "a key landed twice"
    values = zip(
        table["customer"].to_pylist(),
        table["amount"].to_pylist(),
        table["paid"].to_pylist(),
        strict=True,
    )
    return dict(zip(ids, values, strict=True))


def test_inserts_updates_and_deletes_from_the_log_land_by_key(
    tmp_path: Path, logical_pg: str, orders: str
) -> None:
    ws = Workspace.open(project(tmp_path / "p", logical_pg, orders))
    first = ws.run()
    assert first.ok, first.result.error()
    assert lake_rows(ws) == source_rows(logical_pg, orders)
    assert Workspace.open(ws.root).run().result.status == "noop"

    sql(
        logical_pg,
        f"""INSERT INTO {orders} (id, customer, amount, paid) VALUES (500, 'new', 9.99, true);
        UPDATE {orders} SET customer = 'changed', amount = amount + 0.01 WHERE id <= 5;
        DELETE FROM {orders} WHERE id IN (7, 8, 500);
        INSERT INTO {orders} (id, customer, amount, paid) VALUES (501, 'kept', 1.10, null);""",
    )
    ws = Workspace.open(ws.root)
    assert ws.plan().step("orders").reason.startswith("10 change(s) in the log past ")
    outcome = ws.run()
    assert outcome.ok, outcome.result.error()
    assert outcome.result.steps[0].mode == "merge"
    rows = lake_rows(ws)
    assert rows == source_rows(logical_pg, orders)
    assert 7 not in rows and 500 not in rows and rows[501] == ("kept", Decimal("1.10"), None)
    assert rows[1] == ("changed", Decimal("1.26"), False)
    assert "__gm_deleted" not in ws.read("orders").column_names
    # the position rides in the same Delta commit; the slot moved past it only after
    position = DeltaTable(str(ws.lake.path("orders"))).transaction_version("gristmill.cdc.orders")
    state = ws.catalog.latest("orders").stats["cdc"]
    assert state["position"] == position and state["changes"] == 10
    assert Workspace.open(ws.root).run().result.status == "noop"
    [info] = gm_json(ws.root, "sources")
    assert info["state"]["lsn"] == state["lsn"] and info["state"]["slot"] == "gristmill_orders"


@pytest.mark.parametrize("point", ["after_extract", "before_advance", "after_commit"])
def test_killed_at_each_point_then_resumed_applies_every_change_once(
    tmp_path: Path, logical_pg: str, orders: str, point: str
) -> None:
    root = project(tmp_path / "p", logical_pg, orders)
    assert Workspace.open(root).run().ok
    sql(
        logical_pg,
        f"""UPDATE {orders} SET amount = amount + 1 WHERE id % 3 = 0;
        DELETE FROM {orders} WHERE id % 10 = 1;
        INSERT INTO {orders} (id, customer, amount)
        SELECT g, 'k', g FROM generate_series(300, 340) g""",
    )
    killed = subprocess.run(
        [sys.executable, "-m", "gristmill", "ingest", "orders", "-p", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "GRISTMILL_FAILPOINTS": f"{point}:orders"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    sql(logical_pg, f"UPDATE {orders} SET customer = 'after' WHERE id = 300")
    ws = Workspace.open(root)
    assert ws.run().ok
    assert lake_rows(ws) == source_rows(logical_pg, orders)


def test_concurrent_writers_and_random_kills_miss_and_double_nothing(
    tmp_path: Path, logical_pg: str, orders: str
) -> None:
    root = project(tmp_path / "p", logical_pg, orders, chunk_rows="2000")
    assert Workspace.open(root).run().ok
    stop = threading.Event()

    def write(seed: int) -> None:
        import psycopg

        rng = random.Random(seed)
        with psycopg.connect(logical_pg, autocommit=True) as conn:
            while not stop.is_set():
                key = rng.randint(1, 2000)
                with conn.transaction():
                    conn.execute(
                        f"INSERT INTO {orders} (id, customer, amount) VALUES (%s, 'w', %s) "
                        "ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, "
                        "customer = 'u'",
                        (key, rng.randint(1, 99)),
                    )
                    if rng.random() < 0.2:
                        conn.execute(f"DELETE FROM {orders} WHERE id = %s", (rng.randint(1, 2000),))
                time.sleep(0.005)

    writers = [threading.Thread(target=write, args=(s,)) for s in range(3)]
    for w in writers:
        w.start()
    rng = random.Random(5)
    try:
        for _ in range(5):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gristmill",
                    "ingest",
                    "orders",
                    "--follow",
                    "--interval",
                    "0.1",
                    "-p",
                    str(root),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.7, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        stop.set()
        for w in writers:
            w.join()
    for _ in range(300):  # what is left, 2,000 log records at a time
        if Workspace.open(root).ingest(["orders"]).result.status == "noop":
            break
    assert lake_rows(Workspace.open(root)) == source_rows(logical_pg, orders)


def test_capture_settings_that_cannot_work_are_refused(tmp_path: Path, logical_pg: str) -> None:
    for extra, expected in [
        ({"cursor": '"updated_at"'}, "drop cursor= and deletes="),
        ({"capture": '"trigger"'}, "capture='trigger' is not understood"),
        ({"primary_key": "None"}, "needs primary_key="),
        ({"url": '"mysql://root@127.0.0.1:3306/test"'}, "MariaDB/MySQL need a cursor"),
        ({"slot": '"Bad-Slot"'}, "is not a replication slot name"),
    ]:
        root = project(tmp_path / f"p{len(expected)}", logical_pg, "public.x", **extra)
        with pytest.raises(DefinitionError) as info:
            Workspace.open(root)
        assert expected in info.value.message


def test_a_server_without_a_logical_log_says_how_to_get_one(tmp_path: Path, pg_schema: str) -> None:
    from tests.conftest import PG

    sql(PG, TABLE.format(t=f"{pg_schema}.orders"))
    ws = Workspace.open(project(tmp_path / "p", PG, f"{pg_schema}.orders"))
    if sql(PG, "SHOW wal_level")[0][0] == "logical":
        pytest.skip("the shared server keeps a logical log")
    outcome = ws.run()
    error = outcome.result.steps[0].error or {}
    assert "does not keep a logical log (wal_level is not logical)" in error["message"]
    assert "wal_level = logical" in error["hint"]


def test_a_dropped_slot_is_refused_until_a_full_refresh_reads_the_table_again(
    tmp_path: Path, logical_pg: str, orders: str
) -> None:
    root = project(tmp_path / "p", logical_pg, orders)
    assert Workspace.open(root).run().ok
    sql(logical_pg, "SELECT pg_drop_replication_slot('gristmill_orders')")
    sql(logical_pg, f"DELETE FROM {orders} WHERE id = 5; UPDATE {orders} SET customer = 'x'")
    gone = Workspace.open(root).ingest(["orders"])
    assert "is gone" in (gone.result.steps[0].error or {})["message"]
    # a slot made again by someone else (or by hand) is ahead of the table: refused too
    sql(logical_pg, "SELECT pg_create_logical_replication_slot('gristmill_orders', 'wal2json')")
    sql(logical_pg, f"UPDATE {orders} SET customer = 'y' WHERE id = 6")
    ahead = Workspace.open(root).ingest(["orders"])
    error = ahead.result.steps[0].error or {}
    assert "it was made again" in error["message"] and "--full-refresh" in error["hint"]
    refreshed = Workspace.open(root).ingest(["orders"], full_refresh=True)
    assert refreshed.ok, refreshed.result.error()
    assert lake_rows(Workspace.open(root)) == source_rows(logical_pg, orders)
    sql(logical_pg, f"DELETE FROM {orders} WHERE id = 7")
    after = Workspace.open(root).ingest(["orders"])
    assert after.ok, after.result.error()
    assert lake_rows(Workspace.open(root)) == source_rows(logical_pg, orders)
