"""Database sources over the real PostgreSQL and MariaDB servers of this machine."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from gristmill.errors import DefinitionError, SchemaChangeError
from gristmill.workspace import Workspace
from tests.conftest import PG

MARIADB = "mysql://root@127.0.0.1:3306/test"
ORDERS = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(12, 2),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
INSERT INTO {t} (id, customer, amount, updated_at)
SELECT g, 'c' || (g % 7), g * 1.25, now() - interval '1 hour' + g * interval '1 second'
FROM generate_series(1, 500) g;
"""


def pg(sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def project(root: Path, source: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "gristmill.toml").write_text('name = "db"\n')
    (root / "pipeline.py").write_text("import gristmill as gm\n\n" + textwrap.dedent(source))
    return root


def pg_orders(schema: str, **extra: str) -> str:
    settings = {
        "url": '"postgresql://postgres@127.0.0.1:5432/test"',
        "table": f'"{schema}.orders"',
        "cursor": '("updated_at", "id")',
        "primary_key": '"id"',
        "lag": '"10s"',
        "deletes": '"soft:deleted_at"',
        **extra,
    }
    args = ",\n    ".join(f"{k}={v}" for k, v in settings.items())
    return f'orders = gm.database_source(\n    "orders",\n    {args},\n)\n'


def source_rows(schema: str) -> dict[int, tuple[str, object]]:
    rows = pg(f'SELECT id, customer, amount FROM "{schema}".orders WHERE deleted_at IS NULL')
    return {int(i): (c, a) for i, c, a in rows}


def lake_rows(ws: Workspace) -> dict[int, tuple[str, object]]:
    table = ws.read("orders")
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), "a key landed twice"
    values = zip(table["customer"].to_pylist(), table["amount"].to_pylist(), strict=True)
    return dict(zip(ids, values, strict=True))


def test_full_then_incremental_merge_with_updates_inserts_and_soft_deletes(
    tmp_path: Path, pg_schema: str
) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    ws = Workspace.open(project(tmp_path / "p", pg_orders(pg_schema, lag='"0s"')))
    first = ws.run()
    assert first.ok
    assert lake_rows(ws) == source_rows(pg_schema)
    assert str(ws.read("orders").schema.field("amount").type) == "decimal128(12, 2)"
    again = Workspace.open(ws.root).run()
    assert again.result.status == "noop"
    assert "no rows past updated_at" in again.result.steps[0].reason

    pg(
        f"""UPDATE "{pg_schema}".orders SET customer = 'changed', updated_at = now()
            WHERE id <= 5;
        INSERT INTO "{pg_schema}".orders (id, customer, amount) VALUES (501, 'new', 9.99);
        UPDATE "{pg_schema}".orders SET deleted_at = now(), updated_at = now() WHERE id = 300"""
    )
    ws = Workspace.open(ws.root)
    plan = ws.plan()
    assert plan.step("orders").reason.startswith("rows past updated_at")
    outcome = ws.run()
    assert outcome.ok
    step = outcome.result.steps[0]
    # 5 updated, 1 new, 1 deleted, and the row at the watermark read again (a tie is
    # never missed; the merge counts it once)
    assert step.mode == "merge" and step.rows_added == 8
    rows = lake_rows(ws)
    assert rows == source_rows(pg_schema)
    assert 300 not in rows and rows[501] == ("new", Decimal("9.99"))
    assert {rows[i][0] for i in range(1, 6)} == {"changed"}
    # the extraction's number rides in the same Delta commit as its rows
    latest = ws.catalog.latest("orders")
    state = latest.stats["source"]
    assert state["sequence"] == 2
    table = DeltaTable(str(ws.lake.path("orders")))
    assert table.transaction_version("gristmill.source.orders") == 2
    assert table.history(1)[0]["operation"] == "MERGE"


def test_a_late_commit_within_the_lag_is_caught_and_nothing_doubles(
    tmp_path: Path, pg_schema: str
) -> None:
    """A transaction that set updated_at before the last extraction but committed after it
    becomes visible with an old cursor value: lag= reads it on the next run."""
    import psycopg

    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    ws = Workspace.open(project(tmp_path / "p", pg_orders(pg_schema, lag='"30s"')))
    late = psycopg.connect(PG)  # a transaction open across the extraction
    late.execute(
        f"""INSERT INTO "{pg_schema}".orders (id, customer, amount, updated_at)
            VALUES (900, 'late', 1, now() - interval '2 seconds')"""
    )
    pg(f"""INSERT INTO "{pg_schema}".orders (id, customer, amount) VALUES (901, 'early', 1)""")
    assert ws.run().ok
    assert 900 not in lake_rows(ws) and 901 in lake_rows(ws)
    late.commit()
    late.close()
    ws = Workspace.open(ws.root)
    assert "within the lag" in ws.plan().step("orders").reason
    assert ws.run().ok
    assert lake_rows(ws) == source_rows(pg_schema)
    assert Workspace.open(ws.root).run().result.status == "noop"


def test_concurrent_writers_with_late_commits_miss_and_double_nothing(
    tmp_path: Path, pg_schema: str
) -> None:
    """Writers insert and update rows in transactions that stay open up to 1.5 s after
    setting updated_at (so rows become visible with an old cursor value), while
    extractions run back to back; afterwards the lake equals the source, key for key."""
    import psycopg

    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    ws = Workspace.open(project(tmp_path / "p", pg_orders(pg_schema, lag='"5s"')))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        next_id = 10_000 * (seed + 1)
        try:
            with psycopg.connect(PG) as conn:
                while not stop.is_set():
                    if rng.random() < 0.5:
                        next_id += 1
                        conn.execute(
                            f"""INSERT INTO "{pg_schema}".orders (id, customer, amount)
                                VALUES ({next_id}, 'w{seed}', {rng.randint(1, 99)})"""
                        )
                    else:
                        conn.execute(
                            f"""UPDATE "{pg_schema}".orders
                                SET amount = {rng.randint(1, 99)}, customer = 'u{seed}',
                                    updated_at = now()
                                WHERE id = {rng.randint(1, 500)}"""
                        )
                    time.sleep(rng.uniform(0, 1.5))  # the commit comes late
                    conn.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    runs = 0
    deadline = time.monotonic() + 12
    try:
        while time.monotonic() < deadline:
            assert Workspace.open(ws.root).run().ok
            runs += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert Workspace.open(ws.root).run().ok  # after the last commits
    ws = Workspace.open(ws.root)
    assert runs >= 3
    assert lake_rows(ws) == source_rows(pg_schema)


def test_secrets_come_from_the_environment_and_never_show(
    tmp_path: Path, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex[:8]
    literal = project(
        tmp_path / "literal",
        pg_orders(pg_schema, url=f'"postgresql://postgres:{secret}@127.0.0.1:5432/test"'),
    )
    with pytest.raises(DefinitionError, match="holds a password") as refused:
        Workspace.open(literal).plan()
    assert secret not in str(refused.value) + refused.value.hint
    root = project(
        tmp_path / "p",
        pg_orders(pg_schema, url='"postgresql://postgres:${GM_TEST_PW}@127.0.0.1:5999/test"'),
    )
    monkeypatch.delenv("GM_TEST_PW", raising=False)
    outcome = Workspace.open(root).run()
    error = outcome.result.steps[0].error
    assert "GM_TEST_PW" in error["message"] and "does not set" in error["message"]
    monkeypatch.setenv("GM_TEST_PW", secret)
    outcome = Workspace.open(root).run()
    step = outcome.result.steps[0]
    assert not outcome.ok
    assert "cannot reach postgresql at 127.0.0.1:5999" in step.error["message"]
    assert step.error["category"] == "unavailable" and step.error["transient"] is True
    shown = str(step.error) + step.reason
    assert secret not in shown
    for path in (root / ".gristmill").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    # the CLI says the same, without a traceback or the secret
    cli = subprocess.run(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "GM_TEST_PW": secret},
    )
    assert cli.returncode == 1
    assert "127.0.0.1:5999" in cli.stdout + cli.stderr
    assert secret not in cli.stdout + cli.stderr and "Traceback" not in cli.stderr


def test_schema_changes_a_new_column_lands_a_dropped_or_retyped_one_is_refused(
    tmp_path: Path, pg_schema: str
) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    ws = Workspace.open(project(tmp_path / "p", pg_orders(pg_schema)))
    assert ws.run().ok
    pg(
        f"""ALTER TABLE "{pg_schema}".orders ADD COLUMN channel text;
        UPDATE "{pg_schema}".orders SET channel = 'web', updated_at = now() WHERE id = 7"""
    )
    ws = Workspace.open(ws.root)
    assert ws.run().ok
    table = ws.read("orders")
    assert "channel" in table.column_names
    web = table.filter(pc.equal(table["id"], 7))["channel"].to_pylist()
    assert web == ["web"] and table["channel"].null_count == table.num_rows - 1

    pg(
        f"""ALTER TABLE "{pg_schema}".orders DROP COLUMN channel;
        UPDATE "{pg_schema}".orders SET updated_at = now() WHERE id = 8"""
    )
    outcome = Workspace.open(ws.root).run()
    error = outcome.result.steps[0].error
    assert not outcome.ok and "column 'channel' is gone from the source" in error["message"]
    assert "--full-refresh" in error["hint"]
    assert Workspace.open(ws.root).run(full_refresh=True).ok  # what the hint says
    assert "channel" not in Workspace.open(ws.root).read("orders").column_names

    pg(
        f"""ALTER TABLE "{pg_schema}".orders ALTER COLUMN customer TYPE bigint
            USING length(customer);
        UPDATE "{pg_schema}".orders SET updated_at = now() WHERE id = 9"""
    )
    outcome = Workspace.open(ws.root).run()
    error = outcome.result.steps[0].error
    assert "column 'customer' changed type from string to int64" in error["message"]
    assert SchemaChangeError.category == error["category"]


def test_bad_input_is_a_clear_error(tmp_path: Path, pg_schema: str) -> None:
    root = project(tmp_path / "p", pg_orders(pg_schema).replace(".orders", ".nope"))
    outcome = Workspace.open(root).run()
    message = outcome.result.steps[0].error["message"]
    assert "database source 'orders'" in message and "nope" in message
    assert "does not exist" in message
    query = project(
        tmp_path / "q",
        'o = gm.database_source("o", url="postgresql://postgres@127.0.0.1:5432/test", '
        'query="select no_such_column from pg_class")\n',
    )
    error = Workspace.open(query).run().result.steps[0].error
    assert "database source 'o' (postgresql at 127.0.0.1:5432)" in error["message"]
    assert "no_such_column" in error["message"] and error["category"] == "failed"
    cases = {
        'url="oracle://x/y", table="t"': "unsupported database 'oracle'",
        'url="postgresql://h/db"': "give table= or query=",
        'url="postgresql://h/db", table="a b"': "is not a table name",
        'url="postgresql://h/db", table="t", cursor="ts"': "needs primary_key=",
        'url="postgresql://h/db", table="t", deletes="hard"': "is not understood",
        'url="postgresql://h/db", table="t", lag="soon"': "cannot read the duration",
    }
    for args, expected in cases.items():
        bad = project(tmp_path / uuid.uuid4().hex, f'x = gm.database_source("x", {args})\n')
        with pytest.raises(DefinitionError, match=expected) as caught:
            Workspace.open(bad).plan()
        assert caught.value.location is not None and caught.value.location.line == 3


def test_unreachable_server_is_unavailable_and_transient(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        'o = gm.database_source("o", url="postgresql://postgres@127.0.0.1:5999/test", '
        'table="t", cursor="ts", primary_key="id")\n',
    )
    ws = Workspace.open(root)
    assert ws.plan().step("o").reason == "never extracted"  # nothing to ask the server yet
    outcome = ws.run()
    error = outcome.result.steps[0].error
    assert error["category"] == "unavailable" and error["transient"] is True
    assert "cannot reach postgresql at 127.0.0.1:5999" in error["message"]
    assert "is the server running" in error["hint"]


@pytest.mark.parametrize("point", ["after_extract", "merge_staged", "after_commit"])
def test_killed_mid_extraction_then_resumed_lands_every_row_once(
    tmp_path: Path, pg_schema: str, point: str
) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    root = project(tmp_path / "p", pg_orders(pg_schema))
    assert Workspace.open(root).run().ok
    pg(
        f"""UPDATE "{pg_schema}".orders SET amount = amount + 1, updated_at = now()
            WHERE id % 10 = 0;
        INSERT INTO "{pg_schema}".orders (id, customer, amount)
        SELECT g, 'k', 1 FROM generate_series(600, 650) g"""
    )
    killed = subprocess.run(
        [sys.executable, "-m", "gristmill", "run", "-p", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "GRISTMILL_FAILPOINTS": f"{point}:orders"},
    )
    assert killed.returncode == -signal.SIGKILL
    ws = Workspace.open(root)
    staging = ws.lake.root / ".staging"  # the merge's rows were in a file without a name
    assert staging.is_dir() == (point != "after_extract")
    assert not staging.exists() or not any(staging.iterdir())
    assert ws.run().ok
    assert lake_rows(ws) == source_rows(pg_schema)
    sequences = [m.stats["source"]["sequence"] for m in ws.catalog.history("orders")]
    assert sequences == sorted(set(sequences)), sequences  # no extraction recorded twice


def test_sigkill_at_random_moments_of_a_large_extraction(tmp_path: Path, pg_schema: str) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    pg(
        f"""INSERT INTO "{pg_schema}".orders (id, customer, amount)
            SELECT g, 'bulk', g FROM generate_series(1000, 300000) g"""
    )
    root = project(tmp_path / "p", pg_orders(pg_schema))
    rng = random.Random(7)
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "gristmill", "run", "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pg(
            f"""UPDATE "{pg_schema}".orders SET amount = amount + 1, updated_at = now()
                WHERE id % 1000 = {rng.randint(0, 999)}"""
        )
    ws = Workspace.open(root)
    assert ws.run().ok
    assert lake_rows(ws) == source_rows(pg_schema)


# ---- MariaDB ---------------------------------------------------------------------------


def mariadb(sql: str) -> str:
    done = subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-u", "root", "test", "-N", "-e", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture
def maria_table() -> Iterator[str]:
    name = f"gm_orders_{uuid.uuid4().hex[:8]}"
    mariadb(
        f"""CREATE TABLE {name} (
            id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12, 2),
            updated_at DATETIME(6) NOT NULL, deleted_at DATETIME(6) NULL);
        INSERT INTO {name} (id, customer, amount, updated_at)
        SELECT seq, CONCAT('c', seq % 7), seq * 1.25,
               UTC_TIMESTAMP(6) - INTERVAL 1 HOUR + INTERVAL seq SECOND
        FROM seq_1_to_400"""
    )
    try:
        yield name
    finally:
        mariadb(f"DROP TABLE IF EXISTS {name}")


def maria_rows(table: str) -> dict[int, tuple[str, object]]:
    out = mariadb(f"SELECT id, customer, amount FROM {table} WHERE deleted_at IS NULL")
    rows = {}
    for line in out.splitlines():
        i, c, a = line.split("\t")
        rows[int(i)] = (c, Decimal(a))
    return rows


def test_mariadb_full_incremental_and_soft_delete(tmp_path: Path, maria_table: str) -> None:
    source = f"""
    orders = gm.database_source(
        "orders", url="{MARIADB}", table="{maria_table}",
        cursor=("updated_at", "id"), primary_key="id", lag="10s", deletes="soft:deleted_at",
    )
    """
    ws = Workspace.open(project(tmp_path / "p", source))
    assert ws.run().ok
    assert lake_rows(ws) == maria_rows(maria_table)
    assert str(ws.read("orders").schema.field("amount").type).startswith("decimal128")
    assert Workspace.open(ws.root).run().result.status == "noop"
    mariadb(
        f"""UPDATE {maria_table} SET customer = 'changed', updated_at = UTC_TIMESTAMP(6)
            WHERE id <= 3;
        INSERT INTO {maria_table} (id, customer, amount, updated_at)
        VALUES (401, 'new', 2.5, UTC_TIMESTAMP(6));
        UPDATE {maria_table} SET deleted_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)
            WHERE id = 200"""
    )
    ws = Workspace.open(ws.root)
    outcome = ws.run()
    assert outcome.ok and outcome.result.steps[0].mode == "merge"
    rows = lake_rows(ws)
    assert rows == maria_rows(maria_table)
    assert 200 not in rows and rows[401][0] == "new"
    unreachable = project(tmp_path / "q", source.replace("127.0.0.1:3306", "127.0.0.1:3999"))
    started = time.monotonic()
    outcome = Workspace.open(unreachable).run()
    assert time.monotonic() - started < 15  # not connectorx's 30 s of pool retries
    assert "cannot reach mysql at 127.0.0.1:3999" in outcome.result.steps[0].error["message"]


def test_sources_and_ingest_commands(tmp_path: Path, pg_schema: str) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    root = project(
        tmp_path / "p",
        pg_orders(pg_schema, url='"postgresql://postgres:${GM_PW}@127.0.0.1:5432/test"'),
    )
    env = {**os.environ, "GM_PW": "unused-by-trust-auth"}

    def gm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gristmill", *args, "-p", str(root)],
            capture_output=True,
            text=True,
            env=env,
        )

    done = gm("ingest", "orders", "--json")
    assert done.returncode == 0, done.stderr
    import json

    assert json.loads(done.stdout)["summary"]["status"] == "success"
    (listed,) = json.loads(gm("sources", "--json").stdout)
    assert listed["kind"] == "database" and listed["version"] == 0 and listed["rows"] == 500
    url = "postgresql://postgres:${GM_PW}@127.0.0.1:5432/test"
    assert listed["reads"] == f"{url} {pg_schema}.orders"
    assert listed["state"]["sequence"] == 1 and listed["behind_s"] > 3000  # an hour old
    assert listed["last_error"] is None
    # a full refresh keeps counting extractions (the lake's app transaction only grows)
    assert gm("ingest", "orders", "--full-refresh").returncode == 0
    (listed,) = json.loads(gm("sources", "--json").stdout)
    assert listed["state"]["sequence"] == 2
    table = DeltaTable(str(root / "lake" / "orders"))
    assert table.transaction_version("gristmill.source.orders") == 2
    bad = gm("ingest", "nope")
    assert bad.returncode == 2 and "unknown source 'nope'" in bad.stderr
    assert "valid sources: orders" in bad.stderr and "Traceback" not in bad.stderr
    bad_json = gm("ingest", "nope", "--json")
    assert bad_json.returncode == 2
    assert json.loads(bad_json.stdout)["category"] == "not_found"
    env = {k: v for k, v in os.environ.items() if k != "GM_PW"}
    failed = gm("ingest", "orders")
    assert failed.returncode == 1
    (listed,) = json.loads(gm("sources", "--json").stdout)
    assert "${GM_PW}" in listed["last_error"] and "does not set" in listed["last_error"]


def test_a_new_data_sensor_runs_downstream_when_the_database_changes(
    tmp_path: Path, pg_schema: str
) -> None:
    from tests.conftest import gm_json

    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    root = project(
        tmp_path / "p",
        pg_orders(pg_schema, lag='"0s"')
        + 'changed = gm.sensor("changed", on=gm.new_data("orders"), select="orders+", '
        'min_interval="0s")\n',
    )
    (root / "sql").mkdir()
    (root / "sql" / "per_customer.sql").write_text(
        "select customer, count(*) as n from orders group by 1\n"
    )
    first = gm_json(root, "scheduler", "--once")
    (fired,) = [t for t in first["queued_by_triggers"] if t.get("sensor") == "changed"]
    assert "never extracted" in fired["reason"]
    assert [r["status"] for r in first["ran"]] == ["success"]
    quiet = gm_json(root, "scheduler", "--once")
    assert quiet["queued_by_triggers"] == [] and quiet["ran"] == []
    pg(f"""INSERT INTO "{pg_schema}".orders (id, customer, amount) VALUES (777, 'zed', 1)""")
    tick = gm_json(root, "scheduler", "--once")
    (fired,) = [t for t in tick["queued_by_triggers"] if t.get("sensor") == "changed"]
    assert "rows past updated_at" in fired["reason"]
    assert [r["status"] for r in tick["ran"]] == ["success"]
    ws = Workspace.open(root)
    assert "zed" in ws.read("per_customer")["customer"].to_pylist()
    assert gm_json(root, "scheduler", "--once")["queued_by_triggers"] == []


def test_a_query_source_that_repeats_a_key_lands_it_once(tmp_path: Path, pg_schema: str) -> None:
    """Delta's merge inserts a new key twice when the source holds it twice: a query's
    rows are cut to the newest per key first."""
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    query = (
        f"select o.id, o.customer, o.amount, o.updated_at + (x.n * interval '1 second') "
        f'as updated_at from "{pg_schema}".orders o, (values (0), (1)) as x(n)'
    )
    root = project(
        tmp_path / "p",
        f"""orders = gm.database_source(
            "orders", url="postgresql://postgres@127.0.0.1:5432/test",
            query=\"\"\"{query}\"\"\", cursor="updated_at", primary_key="id", lag="0s",
        )
        """,
    )
    ws = Workspace.open(root)
    assert ws.run().ok
    assert len(lake_rows(ws)) == 500
    pg(f"""INSERT INTO "{pg_schema}".orders (id, customer, amount) VALUES (999, 'q', 3)""")
    ws = Workspace.open(root)
    assert ws.run().ok
    rows = lake_rows(ws)  # asserts every key once
    assert len(rows) == 501 and rows[999] == ("q", "3.00")


def test_declared_columns_are_kept_and_cast_and_what_does_not_cast_is_quarantined(
    tmp_path: Path, pg_schema: str
) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    pg(
        f"""INSERT INTO "{pg_schema}".orders (id, customer, amount)
            VALUES (800, 'nan', 'NaN'::numeric)"""
    )
    query = f'select id, customer, amount, updated_at from "{pg_schema}".orders'
    root = project(
        tmp_path / "p",
        f"""orders = gm.database_source(
            "orders", url="postgresql://postgres@127.0.0.1:5432/test", query={query!r},
            cursor="updated_at", primary_key="id",
            columns={{"id": "BIGINT", "amount": "DECIMAL(12, 2)", "updated_at": "TIMESTAMPTZ"}},
        )
        """,
    )
    ws = Workspace.open(root)
    outcome = ws.run()
    assert outcome.ok
    step = outcome.result.steps[0]
    assert step.quarantined == 1 and step.rows == 500
    table = ws.read("orders")
    assert table.column_names == ["id", "amount", "updated_at"]  # customer was not declared
    assert str(table.schema.field("amount").type) == "decimal128(12, 2)"
    bad = ws.quarantine("orders")
    assert bad["amount"].to_pylist() == ["nan"] and "type(amount" in bad["_checks"][0].as_py()[0]


def test_lag_with_a_number_cursor_is_refused(tmp_path: Path, pg_schema: str) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    root = project(tmp_path / "p", pg_orders(pg_schema, cursor='"id"', lag='"5s"'))
    outcome = Workspace.open(root).run()  # at the first read, which learns the type
    assert not outcome.ok and not Workspace.open(root).lake.exists("orders")
    error = outcome.result.steps[0].error
    assert "lag= needs a time cursor, and 'id' holds int values" in error["message"]
    assert error["location"].endswith("pipeline.py:3")


# ---- what an independent test found --------------------------------------------------


def test_an_empty_table_waits_for_its_first_rows(tmp_path: Path, pg_schema: str) -> None:
    pg(f"""CREATE TABLE "{pg_schema}".orders (id int PRIMARY KEY, customer text,
           updated_at timestamptz NOT NULL DEFAULT now())""")
    root = project(tmp_path / "p", pg_orders(pg_schema, deletes='"none"'))
    assert Workspace.open(root).run().ok
    again = Workspace.open(root).run()
    assert again.ok and again.result.steps[0].reason == "no rows yet (v0)"
    pg(f"""INSERT INTO "{pg_schema}".orders (id, customer) VALUES (1, 'a')""")
    ws = Workspace.open(root)
    assert ws.plan().step("orders").reason.startswith("first rows")
    assert ws.run().ok and ws.read("orders")["id"].to_pylist() == [1]


def test_types_delta_cannot_hold_land_exactly(tmp_path: Path, pg_schema: str) -> None:
    """Resolved like the server resolves the name (search path); wide or unconstrained
    numerics as exact text; uuid, time and interval as their text; a quoted name."""
    import uuid as uuidlib

    pg(
        f"""CREATE SCHEMA "{pg_schema}_other";
        CREATE TABLE "{pg_schema}_other".orders (id int PRIMARY KEY, amount numeric(6, 1));
        CREATE TABLE "{pg_schema}".orders (
            id int PRIMARY KEY, amount numeric(12, 4), big numeric, ref uuid, at time,
            took interval, "we""ird" text, updated_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO "{pg_schema}".orders VALUES (1, 1.2345, 12345678901234567891.123456789,
            '6f1c2a3b-0000-4000-8000-000000000001', '12:34:56', '1 day 2 hours', 'q')"""
    )
    try:
        url = f'"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{pg_schema}"'
        source = pg_orders(pg_schema, url=url, deletes='"none"').replace(f"{pg_schema}.", "")
        root = project(tmp_path / "p", source)
        ws = Workspace.open(root)
        outcome = ws.run()
        assert outcome.ok, outcome.result.steps[0].error
        (row,) = ws.read("orders").to_pylist()
        assert str(ws.read("orders").schema.field("amount").type) == "decimal128(12, 4)"
        assert str(row["amount"]) == "1.2345"
        assert row["big"] == "12345678901234567891.123456789"
        assert row["ref"] == str(uuidlib.UUID("6f1c2a3b-0000-4000-8000-000000000001"))
        assert row["at"] == "12:34:56" and "1 day" in row["took"] and row['we"ird'] == "q"
    finally:
        pg(f'DROP SCHEMA "{pg_schema}_other" CASCADE')


def test_keys_that_cannot_merge_are_caught(tmp_path: Path, pg_schema: str) -> None:
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    query = (
        f'select id, customer, updated_at from "{pg_schema}".orders '
        "union all select null, 'x', now()"
    )
    nulls = project(
        tmp_path / "n",
        f"orders = gm.database_source('orders', url='{PG}', cursor='updated_at', "
        f"primary_key='id', query={query!r})\n",
    )
    for _ in range(3):  # a NULL key is one more key: merged, never landed twice
        pg(f"""UPDATE "{pg_schema}".orders SET updated_at = now() WHERE id = 1""")
        ws = Workspace.open(nulls)
        assert ws.run().ok
    keys = ws.read("orders")["id"].to_pylist()
    assert len(keys) == 501 and keys.count(None) == 1
    missing = project(tmp_path / "m", pg_orders(pg_schema, primary_key='"nope"'))
    error = Workspace.open(missing).run().result.steps[0].error
    assert "primary_key= names 'nope', which the rows read do not have" in error["message"]
    pg(f"""CREATE TABLE "{pg_schema}".dups (id int, updated_at timestamptz DEFAULT now());
           INSERT INTO "{pg_schema}".dups (id) VALUES (1), (1), (2)""")
    dups = project(
        tmp_path / "d",
        f"orders = gm.database_source('orders', url='{PG}', table='{pg_schema}.dups', "
        "cursor='updated_at', primary_key='id')\n",
    )
    assert Workspace.open(dups).run().ok
    pg(f"""UPDATE "{pg_schema}".dups SET updated_at = now()""")
    error = Workspace.open(dups).run().result.steps[0].error
    assert "a key (id) appears more than once" in error["message"]


def test_urls_hold_no_secret_and_refusals_are_not_retried(tmp_path: Path) -> None:
    bad = {
        'url="postgresql://h/db?password=hunter2", table="t"': "the URL holds a password",
        'url="postgresql://u@${HOST}/db", table="t"': "placeholders stand for a user or password",
    }
    for args, expected in bad.items():
        root = project(tmp_path / uuid.uuid4().hex, f'x = gm.database_source("x", {args})\n')
        with pytest.raises(DefinitionError, match=expected) as caught:
            Workspace.open(root).plan()
        assert "hunter2" not in str(caught.value)
    refused = project(
        tmp_path / "r",
        'o = gm.database_source("o", url="postgresql://postgres@127.0.0.1:5432/'
        'no_such_db_here", table="t")\n',
    )
    error = Workspace.open(refused).run().result.steps[0].error
    assert "refused the connection" in error["message"] and error["transient"] is False


def test_mariadb_exact_decimals_unsigned_keys_and_ties(tmp_path: Path) -> None:
    name = f"gm_types_{uuid.uuid4().hex[:8]}"
    mariadb(
        f"""CREATE TABLE {name} (id BIGINT UNSIGNED PRIMARY KEY, fine DECIMAL(30, 20),
            wide DECIMAL(50, 10), updated_at DATETIME NOT NULL);
        INSERT INTO {name} VALUES (18446744073709551615, 0.12345678901234567890,
            1234567890123456789012345678901234567890.1234567891, '2026-01-01 00:00:00')"""
    )
    try:
        root = project(
            tmp_path / "p",
            f'o = gm.database_source("o", url="{MARIADB}", table="{name}", '
            'cursor=("updated_at", "id"), primary_key="id")\n',
        )
        ws = Workspace.open(root)
        assert ws.run().ok
        (row,) = ws.read("o").to_pylist()
        assert row["id"] == Decimal("18446744073709551615")
        assert str(row["fine"]) == "0.12345678901234567890"
        assert row["wide"] == "1234567890123456789012345678901234567890.1234567891"
        # a row with the watermark's own value (a tie), with lag 0: still read
        mariadb(f"INSERT INTO {name} VALUES (1, 1, 1, '2026-01-01 00:00:00')")
        mariadb(f"UPDATE {name} SET updated_at = '2026-01-02' WHERE id = 18446744073709551615")
        ws = Workspace.open(root)
        assert ws.run().ok
        assert sorted(ws.read("o")["id"].to_pylist()) == [1, Decimal("18446744073709551615")]
    finally:
        mariadb(f"DROP TABLE IF EXISTS {name}")


def test_a_late_commit_moving_a_row_inside_the_window_is_seen(
    tmp_path: Path, pg_schema: str
) -> None:
    """Neither the newest cursor value nor the window's row count moves when a late commit
    updates a row already inside the lag window; the window's sum of cursor values does."""
    import psycopg

    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    root = project(tmp_path / "p", pg_orders(pg_schema, lag='"30s"'))
    pg(f"""UPDATE "{pg_schema}".orders SET updated_at = now() WHERE id = 1""")
    assert Workspace.open(root).run().ok
    late = psycopg.connect(PG)
    late.execute(
        f"""UPDATE "{pg_schema}".orders SET customer = 'late', updated_at = now()
            WHERE id = 1"""
    )
    time.sleep(0.2)
    pg(f"""INSERT INTO "{pg_schema}".orders (id, customer, amount) VALUES (600, 'n', 1)""")
    assert Workspace.open(root).run().ok  # reads 600, not the uncommitted update
    late.commit()
    late.close()
    ws = Workspace.open(root)
    assert ws.plan().step("orders").reason.startswith("rows changed within the lag")
    assert ws.run().ok
    assert lake_rows(ws) == source_rows(pg_schema)
    assert Workspace.open(root).run().result.status == "noop"


def test_a_second_catalog_over_the_same_lake_adopts_the_extraction(
    tmp_path: Path, pg_schema: str
) -> None:
    """Two catalogs over one lake (a second deployment, a restored catalog): the second
    adopts the first one's extraction, state included, and reads nothing twice."""
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    lake = tmp_path / "shared-lake"
    first = project(tmp_path / "a", pg_orders(pg_schema))
    second = project(tmp_path / "b", pg_orders(pg_schema))
    for root in (first, second):
        (root / "gristmill.toml").write_text(f'name = "db"\nlake = "{lake}"\n')
    assert Workspace.open(first).run().ok
    outcome = Workspace.open(second).run()
    assert outcome.result.status == "noop" and outcome.recovery.adopted == (("orders", 0),)
    pg(f"""INSERT INTO "{pg_schema}".orders (id, customer, amount) VALUES (777, 'z', 1)""")
    assert Workspace.open(second).run().ok
    table = DeltaTable(str(lake / "orders"))
    assert table.transaction_version("gristmill.source.orders") == 2
    assert lake_rows(Workspace.open(second)) == source_rows(pg_schema)


def test_an_extraction_that_finds_a_later_one_in_the_lake_is_refused(tmp_path: Path) -> None:
    """The guard against two processes extracting at once (which run coordination keeps
    apart within one catalog): the lake's extraction number must be the one this follows."""
    import pyarrow as pa

    from gristmill.errors import RunInProgressError
    from gristmill.execution.sources.database import _app_id, _refuse_a_second_writer
    from gristmill.storage.lake import Lake

    root = project(tmp_path / "p", pg_orders("s"))
    source = Workspace.open(root).graph.nodes["orders"]
    lake = Lake(tmp_path / "lake")
    lake.write(
        "orders", pa.table({"id": [1]}), mode="overwrite", record={},
        transactions={_app_id(source): 3},  # type: ignore[arg-type]
    )  # fmt: skip
    with pytest.raises(RunInProgressError, match="extraction 3 is already in the lake"):
        _refuse_a_second_writer(lake, source, 3)  # type: ignore[arg-type]
    _refuse_a_second_writer(lake, source, 4)  # type: ignore[arg-type]  # the next one: fine


def test_a_text_cursor_reads_incrementally_on_postgresql(tmp_path: Path, pg_schema: str) -> None:
    """A text cursor has no sum of its window (PostgreSQL has no sum of text): the count
    alone says whether the rows at the watermark changed."""
    pg(f"""CREATE TABLE "{pg_schema}".codes (k text PRIMARY KEY, v int);
        INSERT INTO "{pg_schema}".codes VALUES ('a', 1), ('b', 2), ('it''s', 3)""")
    root = project(
        tmp_path / "p",
        f'codes = gm.database_source("codes", url="{PG}", table="{pg_schema}.codes", '
        'cursor="k", primary_key="k")\n',
    )
    assert Workspace.open(root).run().ok
    pg(f"""INSERT INTO "{pg_schema}".codes VALUES ('z', 26)""")
    ws = Workspace.open(root)
    assert ws.plan().step("codes").reason == """rows past k "it's" (up to 'z')"""
    assert ws.run().ok
    table = ws.read("codes")
    assert dict(zip(table["k"].to_pylist(), table["v"].to_pylist(), strict=True)) == {
        "a": 1, "b": 2, "it's": 3, "z": 26,
    }  # fmt: skip
    assert Workspace.open(root).run().result.status == "noop"


class _Forwarder:
    """A TCP port that forwards to the local PostgreSQL while it is up: the server as a
    client sees it, going away and coming back."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def up(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def accept() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                server = socket.create_connection(("127.0.0.1", 5432))
                self._open += [client, server]
                threading.Thread(target=pump, args=(client, server), daemon=True).start()
                threading.Thread(target=pump, args=(server, client), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for s in self._open:
            s.close()
        self._open.clear()


def test_follow_backs_off_while_the_server_is_away_and_resumes_when_it_is_back(
    tmp_path: Path, pg_schema: str
) -> None:
    """`ingest --follow` as a real process: a server that cannot be reached is a
    transient failure, tried again 1, 2, 4… s apart (not at every interval), and the
    rows are read as soon as it is back."""
    pg(ORDERS.format(t=f'"{pg_schema}".orders'))
    proxy = _Forwarder()
    url = f'"postgresql://postgres@127.0.0.1:{proxy.port}/test"'
    root = project(tmp_path / "p", pg_orders(pg_schema, url=url))
    follower = subprocess.Popen(
        [sys.executable, "-m", "gristmill", "ingest", "orders", "--follow", "--interval", "0.1",
         "--json", "-p", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert follower.stdout is not None
    try:
        failed, seen = [], []
        for _ in range(3):  # tried at 0, 1 and 3 s (then 7): not every 0.1 s
            failed.append(json.loads(follower.stdout.readline()))
            seen.append(time.monotonic())
        assert all(f["summary"]["status"] == "failed" for f in failed), failed
        assert seen[2] - seen[0] > 2.5, seen
        assert "cannot reach postgresql" in json.dumps(failed[0])
        assert follower.poll() is None  # transient: still following
        proxy.up()
        line = follower.stdout.readline()  # the next try (at 7 s) reads everything
        landed = json.loads(line)
        assert landed["summary"]["status"] == "success", landed
        assert lake_rows(Workspace.open(root)) == source_rows(pg_schema)
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=30) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        follower.stdout.close()
        proxy.down()
