"""The catalog: runs, steps, materializations and ingested files, on SQLAlchemy Core.

SQLite inside the project by default, PostgreSQL by URL. The schema is versioned with
Alembic and upgraded when a project is opened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from gristmill.errors import CatalogError, MissingExtraError
from gristmill.storage.catalog import schema as s
from gristmill.storage.catalog.records import (
    ApiToken,
    ErasureRecord,
    IngestedFile,
    Materialization,
    ModelEvent,
    ModelVersion,
    MonitorAlert,
    MonitorResult,
    PartitionRecord,
    SavedQuery,
    StepRecord,
    as_utc,
    utcnow,
)
from gristmill.storage.catalog.runs import RunStore
from gristmill.storage.catalog.schedules import ScheduleStore

CREATION_GRACE_S = 2.0
"""How long an empty SQLite catalog file may wait for its creator to write its header."""
WRITER = "gristmill_writer"
"""Execution option of the connections that write (on SQLite: ``BEGIN IMMEDIATE``)."""


def resolve_url(url: str, root: Path) -> str:
    """Make a relative SQLite path relative to the project folder."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CatalogError(f"invalid catalog URL {url!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute():
            path = root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(parsed.set(database=str(path)))
    return url


def _engine(url: str) -> Engine:
    try:
        backend = make_url(url).get_backend_name()
        if backend == "sqlite":
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError as exc:
        raise CatalogError(f"unsupported catalog URL {url!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise MissingExtraError(exc.name or "driver", "postgres") from None


def _unreadable(engine: Engine, exc: DatabaseError) -> CatalogError:
    url = engine.url
    if url.get_backend_name() == "sqlite" and not isinstance(exc, OperationalError):
        return CatalogError(
            f"the catalog {url.database} is not a SQLite database ({exc.orig})",
            hint="restore it from a backup, or move it aside and run `gristmill run`: a new "
            "catalog adopts the table versions in the lake (not models, aliases, tokens or "
            "run history)",
        )
    return CatalogError(
        f"cannot open the catalog at {url!r}: {exc.orig}",
        hint="check `catalog` in gristmill.toml and that the database is reachable",
    )


@contextmanager
def _answering(engine: Engine) -> Iterator[None]:
    """A query the database cannot answer (a dropped or altered table, a server that went
    away) is a ``CatalogError`` with the database's words, for every edge alike; a broken
    constraint is our bug and stays what it is."""
    try:
        yield
    except IntegrityError:
        raise
    except DatabaseError as exc:
        raise CatalogError(
            f"the catalog cannot answer: {exc.orig}",
            hint="its tables are damaged or were changed by hand, or its database is not "
            f"reachable: restore the catalog from a backup, or check `catalog` ({engine.url!r})",
        ) from None


def _write_step(conn: Connection, step: StepRecord) -> None:
    values = {
        "status": step.status,
        "reason": step.reason,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "version": step.version,
        "error": step.error,
        "engine": step.engine,
        "engine_reason": step.engine_reason,
    }
    # prebuilt statements with bound values: building one costs more than running it
    updated = conn.execute(
        _STEP_UPDATE, {"b_run": step.run_id, "b_table": step.table_name, **values}
    )
    if not updated.rowcount:
        conn.execute(
            _STEP_INSERT,
            {"run_id": step.run_id, "table_name": step.table_name, "kind": step.kind, **values},
        )


def _storable(number: int) -> bool:
    """Whether a database integer column can hold ``number`` (else no row can match it)."""
    return -(2**63) <= number < 2**63


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # the driver's own transaction handling is off: SQLAlchemy's begin emits the BEGIN
    # (below), so DDL is transactional and a writer can take the lock before it reads
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """``BEGIN IMMEDIATE`` for writers (the write lock first, so what they read stays
    true until they commit; waiting up to the busy timeout), plain ``BEGIN`` for readers."""
    immediate = conn.get_execution_options().get(WRITER, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_STEP_UPDATE = (
    update(s.step_runs)
    .where(
        s.step_runs.c.run_id == bindparam("b_run"),
        s.step_runs.c.table_name == bindparam("b_table"),
    )
    .values(
        {
            c: bindparam(c)
            for c in (
                "status",
                "reason",
                "started_at",
                "finished_at",
                "version",
                "error",
                "engine",
                "engine_reason",
            )
        }
    )  # fmt: skip
)
_STEP_INSERT = insert(s.step_runs)


class CatalogReader:
    """Read-only view of the catalog; what the planner and reports depend on."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with _answering(self._engine), self._engine.connect() as conn:
            yield conn

    def latest(self, table_name: str) -> Materialization | None:
        m = s.materializations
        query = select(m).where(m.c.table_name == table_name).order_by(m.c.version.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
            return self._materialization(conn, row) if row else None

    def latest_versions(self) -> dict[str, int]:
        m = s.materializations
        query = select(m.c.table_name, func.max(m.c.version)).group_by(m.c.table_name)
        with self._read() as conn:
            return {name: int(v) for name, v in conn.execute(query)}

    def materialization(self, table_name: str, version: int) -> Materialization | None:
        if not _storable(version):
            return None
        m = s.materializations
        query = select(m).where(m.c.table_name == table_name, m.c.version == version)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
            return self._materialization(conn, row) if row else None

    def history(self, table_name: str) -> list[Materialization]:
        m = s.materializations
        query = select(m).where(m.c.table_name == table_name).order_by(m.c.version)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
            return [self._materialization(conn, row) for row in rows]

    def ingested_files(self, table_name: str) -> list[IngestedFile]:
        f = s.ingested_files
        query = select(f).where(f.c.table_name == table_name).order_by(f.c.id)
        with self._read() as conn:
            return [_file(row) for row in conn.execute(query).mappings()]

    def steps(self, run_id: str) -> list[StepRecord]:
        t = s.step_runs
        query = select(t).where(t.c.run_id == run_id).order_by(t.c.id)
        with self._read() as conn:
            return [_step(row) for row in conn.execute(query).mappings()]

    def latest_step(self, table_name: str) -> StepRecord | None:
        """The newest step record of a table, of any run."""
        t = s.step_runs
        query = select(t).where(t.c.table_name == table_name).order_by(t.c.id.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return _step(row) if row is not None else None

    def partitions(self, table_name: str) -> dict[str, PartitionRecord]:
        """Each recorded partition of ``table_name`` by key."""
        p = s.partitions
        query = select(p).where(p.c.table_name == table_name)
        with self._read() as conn:
            return {row.partition_key: _partition(row) for row in conn.execute(query).mappings()}

    def latest_many(self, names: Sequence[str]) -> dict[str, Materialization]:
        """The latest materialization of each of ``names`` that has one, in three queries
        whatever their number (the planner asks for every table of a run)."""
        if not names:
            return {}
        m, f, q = s.materializations, s.ingested_files, s.quarantine_counts
        newest = (
            select(m.c.table_name, func.max(m.c.version).label("version"))
            .where(m.c.table_name.in_(list(names)))
            .group_by(m.c.table_name)
            .subquery()
        )
        on = (m.c.table_name == newest.c.table_name) & (m.c.version == newest.c.version)
        with self._read() as conn:
            rows = conn.execute(select(m).join(newest, on)).mappings().all()
            keys = {(r["table_name"], r["version"]) for r in rows}
            found = [r["table_name"] for r in rows]
            files: dict[tuple[str, int], list[Any]] = {}
            for row in conn.execute(
                select(f).where(f.c.table_name.in_(found)).order_by(f.c.id)
            ).mappings():
                if (row["table_name"], row["version"]) in keys:
                    files.setdefault((row["table_name"], row["version"]), []).append(row)
            counts: dict[tuple[str, int], list[tuple[str, int]]] = {}
            for name, version, check, n in conn.execute(
                select(q.c.table_name, q.c.version, q.c.check_name, q.c.rows).where(
                    q.c.table_name.in_(found)
                )
            ):
                if (name, version) in keys:
                    counts.setdefault((name, version), []).append((check, n))
        return {
            r["table_name"]: _materialization_of(
                r,
                files.get((r["table_name"], r["version"]), []),
                counts.get((r["table_name"], r["version"]), []),
            )
            for r in rows
        }

    def _materialization(self, conn: Connection, row: Any) -> Materialization:
        f, q = s.ingested_files, s.quarantine_counts
        name, version = row["table_name"], row["version"]
        files = conn.execute(
            select(f).where(f.c.table_name == name, f.c.version == version).order_by(f.c.id)
        ).mappings()
        counts = conn.execute(
            select(q.c.check_name, q.c.rows).where(q.c.table_name == name, q.c.version == version)
        )
        return _materialization_of(row, files, counts)

    # ---- models ----------------------------------------------------------------------

    def model_names(self) -> list[str]:
        mv = s.model_versions
        with self._read() as conn:
            return list(conn.execute(select(mv.c.model).distinct().order_by(mv.c.model)).scalars())

    def model_versions(self, model: str) -> list[ModelVersion]:
        mv = s.model_versions
        query = select(mv).where(mv.c.model == model).order_by(mv.c.version)
        with self._read() as conn:
            return [_model_version(row) for row in conn.execute(query).mappings()]

    def model_version(self, model: str, version: int) -> ModelVersion | None:
        if not _storable(version):
            return None
        mv = s.model_versions
        query = select(mv).where(mv.c.model == model, mv.c.version == version)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
            return _model_version(row) if row else None

    def aliases(self, model: str) -> dict[str, int]:
        a = s.model_aliases
        query = select(a.c.alias, a.c.version).where(a.c.model == model).order_by(a.c.alias)
        with self._read() as conn:
            return {alias: int(version) for alias, version in conn.execute(query)}

    def tokens(self) -> list[ApiToken]:
        t = s.api_tokens
        with self._read() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at)).mappings().all()
            return [_token(r) for r in rows]

    def token_by_hash(self, digest: str) -> ApiToken | None:
        t = s.api_tokens
        with self._read() as conn:
            row = conn.execute(select(t).where(t.c.hash == digest)).mappings().first()
            return _token(row) if row else None

    def model_events(self, model: str) -> list[ModelEvent]:
        e = s.model_events
        query = select(e).where(e.c.model == model).order_by(e.c.id)
        with self._read() as conn:
            return [_event(row) for row in conn.execute(query).mappings()]

    def monitor_results(
        self,
        monitor: str | None = None,
        *,
        evaluation_id: str | None = None,
        since: datetime | None = None,
    ) -> list[MonitorResult]:
        r = s.monitor_results
        query = select(r).order_by(r.c.id)
        if monitor is not None:
            query = query.where(r.c.monitor == monitor)
        if evaluation_id is not None:
            query = query.where(r.c.evaluation_id == evaluation_id)
        if since is not None:
            query = query.where(r.c.evaluated_at >= since)
        with self._read() as conn:
            return [_monitor_result(row) for row in conn.execute(query).mappings()]

    def monitor_alerts(self, monitor: str | None = None) -> list[MonitorAlert]:
        a = s.monitor_alerts
        query = select(a).order_by(a.c.id)
        if monitor is not None:
            query = query.where(a.c.monitor == monitor)
        with self._read() as conn:
            return [_monitor_alert(row) for row in conn.execute(query).mappings()]

    def latest_alert(self, monitor: str) -> MonitorAlert | None:
        """A monitor's newest alert (one row, however long its history)."""
        a = s.monitor_alerts
        query = select(a).where(a.c.monitor == monitor).order_by(a.c.id.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
            return _monitor_alert(row) if row else None


class Catalog(CatalogReader):
    """The writable catalog. Writes are serialized: runner threads share one instance."""

    def __init__(self, url: str) -> None:
        super().__init__(_engine(url))
        self.url = url
        self._lock = threading.Lock()
        self._writer = self._engine.execution_options(**{WRITER: True})
        self.run_store = RunStore(self)
        self.schedule_store = ScheduleStore(self)
        try:
            self._refuse_emptied()
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    def reader(self) -> CatalogReader:
        return CatalogReader(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock, _answering(self._engine), self._writer.begin() as conn:
            yield conn

    def _refuse_emptied(self) -> None:
        """A SQLite catalog file that stays without bytes was truncated, not created: starting
        a new catalog in it would silently forget models, aliases, tokens and runs.

        Another process creating the catalog right now (two commands started together on a
        new project) writes its header within milliseconds: an empty file is given
        ``CREATION_GRACE_S`` to get one before it is refused.
        """
        url = self._engine.url
        if url.get_backend_name() != "sqlite" or not url.database:
            return
        path = Path(url.database)
        deadline = time.monotonic() + CREATION_GRACE_S
        while path.is_file() and path.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if path.is_file() and path.stat().st_size == 0:
            raise CatalogError(
                f"the catalog {path} is an empty file (0 bytes): it was truncated or replaced",
                hint="restore it from a backup, or delete it and run `gristmill run`: a new "
                "catalog adopts the table versions in the lake (not models, aliases, tokens or "
                "run history)",
            )

    def _migrate(self) -> None:
        try:
            current = self._revision()
        except DatabaseError as exc:
            raise _unreadable(self._engine, exc) from None
        if current == s.HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
        if current is not None and current not in known:
            raise CatalogError(
                f"the catalog has schema revision {current!r}, newer than this release knows",
                hint="upgrade gristmill (pip install -U gristmill)",
            )
        # as a writer: of two processes opening a new catalog, one migrates, the other waits
        # and then finds it at head (alembic reads the revision inside the transaction)
        with self._lock, self._writer.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # SQLite's recipe for rebuilding a table: foreign keys off meanwhile
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            try:
                with conn.begin():
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise CatalogError(
                                f"upgrading the catalog would break {len(broken)} references",
                                hint="restore the catalog from a backup and report this",
                            )
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]

    def _revision(self) -> str | None:
        with self._engine.connect() as conn:
            try:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            except (OperationalError, ProgrammingError) as exc:
                if "alembic_version" in str(exc):
                    conn.rollback()
                    return None
                raise

    def record_step(self, step: StepRecord) -> None:
        with self._write() as conn:
            _write_step(conn, step)

    def record_materialization(
        self,
        m: Materialization,
        *,
        model_version: ModelVersion | None = None,
        step: StepRecord | None = None,
    ) -> None:
        """Store a committed version with its files and quarantine counts, atomically;
        for a model step, the model version it registered, and the step's own record, in
        the same transaction."""
        with self._write() as conn:
            if step is not None:
                _write_step(conn, step)
            if model_version is not None:
                conn.execute(insert(s.model_versions).values(**model_version.__dict__))
            conn.execute(
                insert(s.materializations),
                {
                    "table_name": m.table_name,
                    "version": m.version,
                    "run_id": m.run_id,
                    "kind": m.kind,
                    "mode": m.mode,
                    "fingerprint": m.fingerprint,
                    "code_hash": m.code_hash,
                    "inputs": m.inputs,
                    "rows": m.rows,
                    "rows_added": m.rows_added,
                    "quarantined": m.quarantined,
                    "schema": m.schema,
                    "started_at": m.started_at,
                    "finished_at": m.finished_at,
                    "recovered": m.recovered,
                    "stats": m.stats or None,
                },
            )
            if m.files:
                conn.execute(
                    insert(s.ingested_files),
                    [
                        {
                            "table_name": m.table_name,
                            "version": m.version,
                            "path": f.path,
                            "size": f.size,
                            "mtime_ns": f.mtime_ns,
                            "rows": f.rows,
                            "quarantined": f.quarantined,
                        }
                        for f in m.files
                    ],
                )
            if m.quarantine_counts:
                conn.execute(
                    insert(s.quarantine_counts),
                    [
                        {
                            "table_name": m.table_name,
                            "version": m.version,
                            "check_name": c,
                            "rows": n,
                        }
                        for c, n in sorted(m.quarantine_counts.items())
                    ],
                )

    def add_token(self, token: ApiToken) -> None:
        with self._write() as conn:
            conn.execute(insert(s.api_tokens).values(**token.__dict__))

    def revoke_token(self, token_id: str) -> bool:
        t = s.api_tokens
        with self._write() as conn:
            done = conn.execute(
                update(t)
                .where(t.c.id == token_id, t.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return bool(done.rowcount)

    def move_alias(self, event: ModelEvent) -> None:
        """Point ``event.alias`` at ``event.version`` (or remove it) and record the event."""
        a = s.model_aliases
        with self._write() as conn:
            conn.execute(delete(a).where(a.c.model == event.model, a.c.alias == event.alias))
            if event.action != "demote":
                conn.execute(
                    insert(a).values(
                        model=event.model,
                        alias=event.alias,
                        version=event.version,
                        updated_at=event.at,
                    )
                )
            conn.execute(insert(s.model_events).values(**event.__dict__))

    def record_erasure(self, erasure: ErasureRecord) -> None:
        """An entry of the erasure trail (the subject as a digest, never as it is)."""
        values = {k: v for k, v in erasure.__dict__.items() if k != "id"}
        with self._write() as conn:
            conn.execute(insert(s.erasures).values(**values))

    def erasures(self) -> list[ErasureRecord]:
        e = s.erasures
        with self._read() as conn:
            rows = conn.execute(select(e).order_by(e.c.id)).mappings()
            return [ErasureRecord(**dict(row)) for row in rows]

    def save_query(self, query: SavedQuery) -> None:
        """Keep a query under its name (replacing one of the same name)."""
        q = s.saved_queries
        with self._write() as conn:
            conn.execute(delete(q).where(q.c.name == query.name))
            conn.execute(insert(q).values(**query.__dict__))

    def saved_queries(self) -> list[SavedQuery]:
        q = s.saved_queries
        with self._read() as conn:
            rows = conn.execute(select(q).order_by(q.c.name)).mappings()
            return [
                SavedQuery(**{**dict(row), "saved_at": as_utc(row["saved_at"])}) for row in rows
            ]

    def delete_query(self, name: str) -> bool:
        q = s.saved_queries
        with self._write() as conn:
            return bool(conn.execute(delete(q).where(q.c.name == name)).rowcount)

    def record_event(self, event: ModelEvent) -> None:
        """An audit-trail entry that moves no alias (a retrain, a refusal, a pending one)."""
        with self._write() as conn:
            conn.execute(insert(s.model_events).values(**event.__dict__))

    def record_partitions(self, records: Sequence[PartitionRecord]) -> None:
        """The new state of some partitions of one table, in one transaction."""
        if not records:
            return
        p = s.partitions
        with self._write() as conn:
            conn.execute(
                delete(p).where(
                    p.c.table_name == records[0].table_name,
                    p.c.partition_key.in_([r.partition_key for r in records]),
                )
            )
            conn.execute(insert(p), [r.__dict__ for r in records])

    def settle_alert(
        self, evaluation_id: str, monitor: str, action: str, details: dict[str, Any]
    ) -> None:
        """What an alert's queued trigger came to (``promoted``, ``kept``, ...)."""
        a = s.monitor_alerts
        with self._write() as conn:
            conn.execute(
                update(a)
                .where(a.c.evaluation_id == evaluation_id, a.c.monitor == monitor)
                .values(action=action, details=details)
            )

    def record_evaluation(self, results: list[MonitorResult], alerts: list[MonitorAlert]) -> None:
        """One monitor evaluation's results and alerts, in one transaction."""
        with self._write() as conn:
            if results:
                conn.execute(insert(s.monitor_results), [r.__dict__ for r in results])
            if alerts:
                conn.execute(insert(s.monitor_alerts), [a.__dict__ for a in alerts])


def _materialization_of(row: Any, files: Any, counts: Any) -> Materialization:
    name, version = row["table_name"], row["version"]
    return Materialization(
        table_name=name,
        version=version,
        run_id=row["run_id"],
        kind=row["kind"],
        mode=row["mode"],
        fingerprint=row["fingerprint"],
        code_hash=row["code_hash"],
        inputs=dict(row["inputs"]),
        rows=row["rows"],
        rows_added=row["rows_added"],
        quarantined=row["quarantined"],
        schema=list(row["schema"]),
        started_at=as_utc(row["started_at"]),  # type: ignore[arg-type]
        finished_at=as_utc(row["finished_at"]),  # type: ignore[arg-type]
        recovered=bool(row["recovered"]),
        files=tuple(_file(r) for r in files),
        quarantine_counts={c: int(n) for c, n in counts},
        stats=dict(row["stats"] or {}),
    )


def _partition(row: Any) -> PartitionRecord:
    data = {k: row[k] for k in PartitionRecord.__dataclass_fields__}
    data["updated_at"] = as_utc(data["updated_at"])
    data["inputs"] = {k: int(v) for k, v in (data["inputs"] or {}).items()}
    return PartitionRecord(**data)


def _monitor_result(row: Any) -> MonitorResult:
    data = {k: row[k] for k in MonitorResult.__dataclass_fields__}
    for key in ("evaluated_at", "window_start", "window_end"):
        data[key] = as_utc(data[key])
    return MonitorResult(**data)


def _monitor_alert(row: Any) -> MonitorAlert:
    data = {k: row[k] for k in MonitorAlert.__dataclass_fields__}
    data["at"] = as_utc(data["at"])
    return MonitorAlert(**data)


def _token(row: Any) -> ApiToken:
    data = {k: row[k] for k in ApiToken.__dataclass_fields__}
    data["created_at"] = as_utc(data["created_at"])
    data["revoked_at"] = as_utc(data["revoked_at"])
    return ApiToken(**data)


def _model_version(row: Any) -> ModelVersion:
    data = {k: row[k] for k in ModelVersion.__dataclass_fields__}
    data["created_at"] = as_utc(data["created_at"])
    return ModelVersion(**data)


def _event(row: Any) -> ModelEvent:
    data = {k: row[k] for k in ModelEvent.__dataclass_fields__}
    data["at"] = as_utc(data["at"])
    return ModelEvent(**data)


def _file(row: Any) -> IngestedFile:
    return IngestedFile(
        path=row["path"],
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        rows=row["rows"],
        quarantined=row["quarantined"],
    )


def _step(row: Any) -> StepRecord:
    return StepRecord(
        run_id=row["run_id"],
        table_name=row["table_name"],
        kind=row["kind"],
        status=row["status"],
        reason=row["reason"],
        started_at=as_utc(row["started_at"]),
        finished_at=as_utc(row["finished_at"]),
        version=row["version"],
        error=row["error"],
        engine=row["engine"],
        engine_reason=row["engine_reason"],
    )
