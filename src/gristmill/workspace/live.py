"""``gristmill init demo --example churn --live``: the example's data on real servers.

The generated users go into a PostgreSQL table (with an ``email`` column, tagged as
personal data in the project), the transactions into a MariaDB/MySQL table, and the
clickstream events into a NATS JetStream stream, each named after the project folder
with a random suffix so two demos never share one. The project's ``sources.py`` then
reads them from there; the labels stay files.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gristmill.errors import GristmillError, SourceReadError, SourceUnavailableError

PG = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = "mysql://root@127.0.0.1:3306/test"
NATS = "nats://127.0.0.1:4222"
PII_KEY_FILE = ".gristmill/pii.key"


@dataclass(frozen=True)
class Servers:
    postgres: str = PG
    mysql: str = MYSQL
    nats: str = NATS


@dataclass(frozen=True)
class Names:
    schema: str
    """PostgreSQL schema holding ``users``."""
    table: str
    """MariaDB table of the transactions."""
    stream: str
    """JetStream stream of the events (subjects ``<stream lower>.events``)."""

    @classmethod
    def for_folder(cls, folder: Path) -> Names:
        base = re.sub(r"[^a-z0-9]+", "_", folder.name.lower()).strip("_")[:20] or "demo"
        tag = f"{base}_{secrets.token_hex(3)}"
        return cls(f"gm_{tag}", f"gm_{tag}_transactions", f"GM_{tag.upper()}_EVENTS")


def load(data: Path, servers: Servers, names: Names) -> dict[str, int]:
    """Load the generated files below ``data`` into the servers; rows per server."""
    import duckdb

    con = duckdb.connect()
    users = con.sql(
        f"""SELECT user_id, lower(user_id) || '@example.com' AS email, signup_ts, plan,
                   country, birth_year
            FROM read_csv('{data / "users" / "*.csv"}', all_varchar = true)
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY signup_ts) = 1"""
    ).to_arrow_table()
    transactions = con.sql(
        f"""SELECT * FROM read_csv('{data / "transactions" / "*.csv"}', all_varchar = true)
            QUALIFY row_number() OVER (PARTITION BY txn_id ORDER BY ts) = 1"""
    ).to_arrow_table()
    events = con.sql(
        f"SELECT * FROM read_parquet('{data / 'events' / '*.parquet'}') ORDER BY ts"
    ).to_arrow_table()
    con.close()
    done: list[str] = []
    try:
        _postgres(servers.postgres, names.schema, users)
        done.append("postgres")
        _mysql(servers.mysql, names.table, transactions)
        done.append("mysql")
        asyncio.run(_nats(servers.nats, names.stream, events))
    except BaseException:
        _undo(servers, names, done)  # no personal data left behind on a failed init
        raise
    return {
        "postgres_users": users.num_rows,
        "mysql_transactions": transactions.num_rows,
        "nats_events": events.num_rows,
    }


SCHEMES = {
    "postgres": ("PostgreSQL", ("postgresql", "postgres")),
    "mysql": ("MariaDB/MySQL", ("mysql", "mariadb")),
    "nats": ("NATS", ("nats", "tls")),
}
PASSWORD_VARIABLES = {
    "postgres": "GRISTMILL_LIVE_PG_PASSWORD",
    "mysql": "GRISTMILL_LIVE_MYSQL_PASSWORD",
    "nats": "GRISTMILL_LIVE_NATS_PASSWORD",
}


def check(servers: Servers) -> None:
    """Each URL of the right kind, and each server reachable, before anything is loaded."""
    from urllib.parse import urlsplit

    from gristmill.errors import InvalidInputError

    for option, url in (("postgres", servers.postgres), ("mysql", servers.mysql),
                        ("nats", servers.nats)):  # fmt: skip
        what, schemes = SCHEMES[option]
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in schemes or not parts.hostname:
            raise InvalidInputError(
                f"--{option} {redact(url)!r} is not a {what} URL",
                hint=f"e.g. {getattr(Servers(), option)}",
            )
    _postgres_reachable(servers.postgres)
    _mysql_connect(servers.mysql).close()
    asyncio.run(_nats_reachable(servers.nats))


def redact(url: str) -> str:
    from gristmill.definitions.urls import redact_credentials

    return redact_credentials(url)


def placeholders_for(servers: Servers) -> tuple[Servers, dict[str, str]]:
    """The servers as sources.py names them: a password as a ``${VARIABLE}`` (the project
    must not hold it), with the variables to export."""
    from urllib.parse import urlsplit, urlunsplit

    out: dict[str, str] = {}
    urls = {}
    for option in ("postgres", "mysql", "nats"):
        url = getattr(servers, option)
        parts = urlsplit(url)
        if parts.password:
            variable = PASSWORD_VARIABLES[option]
            out[variable] = parts.password
            user, _, host = parts.netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:${{{variable}}}@{host}"
            url = urlunsplit(parts._replace(netloc=netloc))
        urls[option] = url
    return Servers(urls["postgres"], urls["mysql"], urls["nats"]), out


def _undo(servers: Servers, names: Names, done: list[str]) -> None:
    """Drop what a failed init made (best effort: the servers may be the trouble)."""
    try:
        if "postgres" in done:
            with _pg().connect(servers.postgres, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{names.schema}" CASCADE')
        if "mysql" in done:
            conn = _mysql_connect(servers.mysql)
            with conn, conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS `{names.table}`")
    except Exception:  # noqa: BLE001 - the original failure is what the user must see
        pass


def _pg() -> Any:
    """ADBC's PostgreSQL DB-API module (the databases extra)."""
    try:
        import adbc_driver_postgresql.dbapi as pg
    except ModuleNotFoundError:
        from gristmill.errors import MissingExtraError

        raise MissingExtraError("adbc-driver-postgresql", "databases") from None
    return pg


def change_capture(url: str) -> str | None:
    """None when the server can stream its changes to a logical replication slot through
    wal2json (the users are then read by change data capture), else why not."""
    probe = f"gm_probe_{secrets.token_hex(4)}"
    try:
        with _pg().connect(url, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('wal_level')")
                (level,) = cur.fetchone() or ("?",)
            if level != "logical":
                return f"its wal_level is {level}, not logical"
            with conn.cursor() as cur:  # a temporary slot: gone with this session
                cur.execute(
                    f"SELECT 1 FROM pg_create_logical_replication_slot('{probe}', 'wal2json', true)"
                )
                cur.fetchall()
    except Exception as exc:  # noqa: BLE001 - any refusal is a reason to use the cursor
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"it cannot make a wal2json slot ({first})"
    return None


def _postgres_reachable(url: str) -> None:
    try:
        _pg().connect(url).close()
    except GristmillError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _failure("PostgreSQL", url, exc) from None


async def _nats_client(url: str) -> Any:
    """A NATS connection that says plainly why it could not be made."""
    try:
        import nats
    except ModuleNotFoundError:
        from gristmill.errors import MissingExtraError

        raise MissingExtraError("nats-py", "streams") from None

    async def quiet(exc: Exception) -> None:
        pass

    try:
        return await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1,
                                  error_cb=quiet)  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        raise _failure("NATS", url, exc) from None


async def _nats_reachable(url: str) -> None:
    await (await _nats_client(url)).close()


def _mysql_connect(url: str) -> Any:
    from urllib.parse import unquote, urlsplit

    try:
        import pymysql
    except ModuleNotFoundError:
        from gristmill.errors import MissingExtraError

        raise MissingExtraError("pymysql", "databases") from None
    parts = urlsplit(url)
    try:
        return pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/") or "test",
            connect_timeout=10,
            autocommit=True,
        )
    except Exception as exc:  # noqa: BLE001
        raise _failure("MariaDB/MySQL", url, exc) from None


def _postgres(url: str, schema: str, users: Any) -> None:
    pg = _pg()
    statements = [
        f'CREATE SCHEMA "{schema}"',
        f"""CREATE TABLE "{schema}".users (user_id text PRIMARY KEY, email text,
            signup_ts timestamp, plan text, country text, birth_year text,
            updated_at timestamptz NOT NULL DEFAULT now())""",
    ]
    moved = [
        f"""INSERT INTO "{schema}".users (user_id, email, signup_ts, plan, country,
            birth_year) SELECT user_id, email, signup_ts::timestamp, plan, country,
            birth_year FROM "{schema}".users_load""",
        f'DROP TABLE "{schema}".users_load',
    ]
    try:
        with pg.connect(url, autocommit=True) as conn:
            for sql in statements:
                with conn.cursor() as cur:
                    cur.execute(sql)
            with conn.cursor() as cur:
                cur.adbc_ingest("users_load", users, mode="create", db_schema_name=schema)
            for sql in moved:
                with conn.cursor() as cur:
                    cur.execute(sql)
    except GristmillError:
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's errors, said plainly
        raise _failure("PostgreSQL", url, exc) from None


def _mysql(url: str, table: str, transactions: Any) -> None:
    conn = _mysql_connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"""CREATE TABLE `{table}` (txn_id varchar(32) PRIMARY KEY,
                    user_id varchar(32), ts datetime(6), amount varchar(32),
                    merchant_category varchar(32), channel varchar(16),
                    updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                        ON UPDATE CURRENT_TIMESTAMP(6))"""
            )
            rows = list(
                zip(*(transactions[c].to_pylist() for c in transactions.column_names), strict=True)
            )
            for start in range(0, len(rows), 5_000):
                cur.executemany(
                    f"INSERT INTO `{table}` (txn_id, user_id, ts, amount, merchant_category, "
                    "channel) VALUES (%s, %s, %s, %s, %s, %s)",
                    rows[start : start + 5_000],
                )
    except Exception as exc:  # noqa: BLE001
        raise _failure("MariaDB/MySQL", url, exc) from None


async def _nats(url: str, stream: str, events: Any) -> None:
    import orjson

    client = await _nats_client(url)  # says when nats-py is missing
    from nats.js.api import StreamConfig

    try:
        js = client.jetstream()
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"]))
        subject = f"{stream.lower()}.events"
        rows = events.to_pylist()
        for start in range(0, len(rows), 2_000):
            acks = [
                await js.publish_async(subject, orjson.dumps(row, default=str))
                for row in rows[start : start + 2_000]
            ]
            await asyncio.gather(*acks)
    finally:
        await client.close()


def _failure(what: str, url: str, exc: BaseException) -> GristmillError:
    from urllib.parse import urlsplit

    from gristmill.definitions.urls import redact_credentials

    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    text = redact_credentials(str(exc) or type(exc).__name__).splitlines()[0][:300]
    if re.search(
        r"refused|timed out|timeout|no servers|can't connect|could not connect", text, re.I
    ):
        return SourceUnavailableError(
            f"--live: cannot reach {what} at {where}: {text}",
            hint="start it, or point --live at another one (see gristmill init --help)",
        )
    return SourceReadError(f"--live: {what} at {where} refused the example's data: {text}")


START = "# ---- users, transactions and events: files ----"
END = "# ----\n"


def sources_module(template: str, servers: Servers, names: Names, *, capture: bool) -> str:
    """The example's ``sources.py`` with its file sources replaced by the servers';
    ``capture``: the users are read from PostgreSQL's log rather than by a cursor."""
    head, found, rest = template.partition(START)
    _, ended, tail = rest.partition(END)
    assert found and ended, "the example's sources.py lost its markers"
    block = LIVE_SOURCES.format(
        pg=servers.postgres,
        mysql=servers.mysql,
        nats=servers.nats,
        schema=names.schema,
        table=names.table,
        stream=names.stream,
        users_read=USERS_BY_LOG if capture else USERS_BY_CURSOR,
    )
    return head + block + END + tail


USERS_BY_CURSOR = 'cursor=("updated_at", "user_id"),'
USERS_BY_LOG = (
    'capture="logical",  # every insert, update and delete, from the server\'s log (wal2json)'
)


LIVE_SOURCES = """# ---- users, transactions and events: on servers (gristmill init --live) ----
users = gm.database_source(
    "users",
    url="{pg}",
    table="{schema}.users",
    {users_read}
    primary_key="user_id",
    columns={{
        "user_id": "VARCHAR",
        "email": "VARCHAR",
        "signup_ts": "TIMESTAMP",
        "plan": "VARCHAR",
        "country": "VARCHAR",
        "birth_year": "INTEGER",
        "updated_at": "TIMESTAMPTZ",
    }},
    checks=[
        gm.not_null("user_id", "signup_ts", "plan"),
        gm.matches("user_id", r"u_\\d{{7}}"),
        gm.accepted_values("plan", PLANS),
        gm.in_range("birth_year", min=1900, max=2015),
    ],
    pii={{"email": "email"}},
    description="Registered users, from the shop's PostgreSQL.",
)

transactions = gm.database_source(
    "transactions",
    url="{mysql}",
    table="{table}",
    cursor=("updated_at", "txn_id"),  # when a row was written, not when it happened
    primary_key="txn_id",
    columns={{
        "txn_id": "VARCHAR",
        "user_id": "VARCHAR",
        "ts": "TIMESTAMP",
        "amount": "DOUBLE",
        "merchant_category": "VARCHAR",
        "channel": "VARCHAR",
        "updated_at": "TIMESTAMP",
    }},
    checks=[
        gm.not_null("txn_id", "user_id", "ts", "amount"),
        gm.in_range("amount", min=0),
        gm.accepted_values("merchant_category", CATEGORIES),
        gm.accepted_values("channel", CHANNELS),
    ],
    description="Card transactions, from the payments MariaDB.",
)

events = gm.stream_source(
    "events",
    url="{nats}",
    stream="{stream}",
    columns={{
        "event_id": "VARCHAR",
        "user_id": "VARCHAR",
        "ts": "TIMESTAMP",
        "event_type": "VARCHAR",
        "device": "VARCHAR",
        "duration_s": "DOUBLE",
    }},
    checks=[
        gm.not_null("event_id", "user_id", "ts"),
        gm.accepted_values("event_type", EVENT_TYPES),
    ],
    primary_key="event_id",
    description="Clickstream events, from NATS JetStream.",
)

feedback = gm.intake_source(
    "feedback",
    columns={{
        "user_id": "VARCHAR",
        "score": "INTEGER",
        "comment": "VARCHAR",
        "_received_at": "TIMESTAMPTZ",
    }},
    checks=[gm.not_null("user_id", "score"), gm.in_range("score", min=0, max=10)],
    pii={{"comment": "free_text"}},
    description="Survey answers posted by the app: POST /v1/intake/feedback (gristmill serve).",
)

"""
