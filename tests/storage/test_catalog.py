"""The catalog contract, run over every backend: SQLite and a real PostgreSQL."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gristmill.errors import CatalogError
from gristmill.storage.catalog import (
    Catalog,
    IngestedFile,
    Materialization,
    ModelEvent,
    ModelVersion,
)
from gristmill.storage.catalog.schema import HEAD_REVISION as HEAD


def materialization(version: int, mode: str = "overwrite") -> Materialization:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=version)
    return Materialization(
        table_name="t",
        version=version,
        run_id=f"run{version}",
        kind="ingest",
        mode=mode,
        fingerprint=f"fp{version}",
        code_hash="code",
        inputs={"a": 3},
        rows=10 * (version + 1),
        rows_added=10,
        quarantined=2,
        schema=[{"name": "x", "type": "int64"}],
        started_at=start,
        finished_at=start + timedelta(seconds=3),
        files=(IngestedFile("data/a.csv", 100, 123, 8, 2),),
        quarantine_counts={"not_null(x)": 2},
    )


def test_migrates_to_head_and_reopens(url: str) -> None:
    Catalog(url).close()
    catalog = Catalog(url)  # second open: already at head, no migration
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == HEAD
    engine.dispose()
    assert catalog.latest_versions() == {}
    catalog.close()


def test_materialization_round_trip(url: str) -> None:
    catalog = Catalog(url)
    catalog.record_materialization(materialization(0))
    catalog.record_materialization(materialization(1, "append"))
    latest = catalog.latest("t")
    assert latest == materialization(1, "append")
    assert latest.duration_s == 3.0
    assert [m.version for m in catalog.history("t")] == [0, 1]
    assert catalog.latest_versions() == {"t": 1}
    assert catalog.materialization("t", 0).quarantine_counts == {"not_null(x)": 2}
    assert [f.path for f in catalog.ingested_files("t")] == ["data/a.csv", "data/a.csv"]
    assert catalog.materialization("t", 7) is None
    catalog.close()


def test_newer_schema_is_refused(url: str) -> None:
    Catalog(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999'"))
    engine.dispose()
    with pytest.raises(CatalogError, match="newer than this release"):
        Catalog(url)


def test_unreachable_catalog_is_a_clear_error() -> None:
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        Catalog("postgresql+psycopg://postgres@127.0.0.1:1/none")


def test_upgrades_a_0001_catalog_keeping_its_rows(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    import gristmill.storage.catalog.store as store

    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            text(
                "insert into materializations (table_name, version, run_id, kind, mode, "
                "fingerprint, code_hash, inputs, rows, rows_added, quarantined, schema, "
                "started_at, finished_at, recovered) values ('old', 0, 'r', 'sql', "
                "'overwrite', 'f', 'c', '{}', 5, 5, 0, '[]', :t, :t, false)"
            ),
            {"t": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    engine.dispose()
    catalog = Catalog(url)  # upgrades to head
    old = catalog.latest("old")
    assert old is not None and (old.rows, old.stats) == (5, {})
    assert catalog.model_names() == []
    catalog.close()


def model_version(version: int) -> ModelVersion:
    return ModelVersion(
        model="churn",
        version=version,
        run_id="r",
        created_at=datetime(2026, 2, 1, tzinfo=UTC),
        task="classification",
        estimator="lightgbm",
        training_set="ts",
        training_set_version=4,
        code_hash="c",
        fingerprint="f",
        artifact_digest="a" * 64,
        manifest_digest="b" * 64,
        duration_s=1.5,
        metrics={"roc_auc": {"value": 0.8, "low": 0.78, "high": 0.82}},
        details={"params": {"num_leaves": 4}},
    )


def test_model_versions_aliases_and_events(url: str) -> None:
    catalog = Catalog(url)
    for v in (1, 2):
        m = Materialization(**{**materialization(v).__dict__, "table_name": "churn", "files": ()})
        catalog.record_materialization(m, model_version=model_version(v))
    assert [v.version for v in catalog.model_versions("churn")] == [1, 2]
    assert catalog.model_version("churn", 2) == model_version(2)
    assert catalog.latest("churn").version == 2  # the planner sees the model's version
    at = datetime(2026, 3, 1, tzinfo=UTC)
    catalog.move_alias(ModelEvent("churn", "promote", "champion", 1, None, "ana", "", at, []))
    catalog.move_alias(ModelEvent("churn", "override", "champion", 2, 1, "bo", "why", at, []))
    assert catalog.aliases("churn") == {"champion": 2}
    events = catalog.model_events("churn")
    assert [(e.action, e.version, e.previous_version) for e in events] == [
        ("promote", 1, None),
        ("override", 2, 1),
    ]
    assert events[1].at == at and events[1].reason == "why"
    catalog.close()


def test_an_empty_catalog_file_being_created_by_another_process_is_waited_for(
    tmp_path: Path,
) -> None:
    import sqlite3
    import threading
    import time

    path = tmp_path / "catalog.db"
    path.touch()  # what a process that just began creating the catalog leaves for a moment

    def create() -> None:
        time.sleep(0.3)
        sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()

    creator = threading.Thread(target=create)
    creator.start()
    catalog = Catalog(f"sqlite:///{path}")  # waits for the header, then migrates to head
    creator.join()
    assert catalog.latest_versions() == {}
    catalog.close()
    path.write_bytes(b"")  # an empty file that stays empty was truncated: refused
    with pytest.raises(CatalogError, match="is an empty file"):
        Catalog(f"sqlite:///{path}")
