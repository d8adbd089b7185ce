"""The lake: one Delta table per project table, written through ``deltalake``.

Every write is one atomic Delta commit, so a crashed writer leaves at most unreferenced
Parquet files and never a visible half-written version. Each commit carries the
materialization record as custom metadata under ``gristmill``; that is what lets the
catalog be rebuilt from the lake after a crash between the two.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gristmill.errors import LakeError, VersionNotFoundError

if TYPE_CHECKING:  # heavy imports stay lazy so that a no-op run starts fast
    import pyarrow as pa
    import pyarrow.dataset as pads
    from deltalake import DeltaTable

METADATA_KEY = "gristmill"
QUARANTINE_SUFFIX = "__quarantine"

WriteMode = Literal["append", "overwrite"]


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp_ms: int
    operation: str
    record: Mapping[str, Any] | None
    """The materialization record Gristmill stored with the commit; None if foreign."""


class Lake:
    """Delta tables below one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def quarantine_name(self, name: str) -> str:
        return f"{name}{QUARANTINE_SUFFIX}"

    def exists(self, name: str) -> bool:
        return (self.path(name) / "_delta_log").is_dir()

    def latest_version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        from deltalake import DeltaTable

        return DeltaTable(str(self.path(name))).version()

    def _table(self, name: str, version: int | None = None) -> DeltaTable:
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        try:
            return DeltaTable(str(self.path(name)), version=version)
        except TableNotFoundError:
            raise LakeError(
                f"table {name!r} has no Delta table at {self.path(name)}",
                hint="run `gristmill run` to build it",
            ) from None
        except DeltaError as exc:
            if version is not None:
                raise VersionNotFoundError(
                    f"table {name!r} has no version {version}",
                    hint=f"`gristmill history {name}` lists its versions",
                ) from exc
            raise LakeError(f"cannot open table {name!r}: {exc}") from exc

    def dataset(self, name: str, version: int) -> pads.Dataset:
        return self._table(name, version).to_pyarrow_dataset()

    def read(
        self,
        name: str,
        version: int,
        *,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        dataset = self.dataset(name, version)
        if limit is not None:
            return dataset.head(limit, columns=columns)
        return dataset.to_table(columns=columns)

    def count(self, name: str, version: int) -> int:
        return int(self._table(name, version).count())

    def schema(self, name: str, version: int) -> pa.Schema:
        return self.dataset(name, version).schema

    def write(
        self,
        name: str,
        data: pa.RecordBatchReader | pa.Table,
        *,
        mode: WriteMode,
        record: Mapping[str, Any],
        predicate: str | None = None,
        merge_schema: bool = False,
    ) -> int:
        """Commit ``data`` as the next version of ``name`` and return that version."""
        from deltalake import CommitProperties, DeltaTable, write_deltalake
        from deltalake.exceptions import DeltaError

        path = str(self.path(name))
        properties = CommitProperties(custom_metadata={METADATA_KEY: json.dumps(record)})
        try:
            write_deltalake(
                path,
                data,
                mode=mode,
                schema_mode=_schema_mode(mode, predicate, merge_schema),
                predicate=predicate,
                commit_properties=properties,
            )
        except DeltaError as exc:
            raise LakeError(f"writing table {name!r} failed: {exc}") from exc
        return DeltaTable(path).version()

    def has_commit_after(self, name: str, version: int | None) -> bool:
        """Cheap check (one stat) for a commit newer than ``version``, per the Delta log layout."""
        following = 0 if version is None else version + 1
        return (self.path(name) / "_delta_log" / f"{following:020d}.json").exists()

    def delete(self, name: str, predicate: str) -> None:
        """Delete rows matching ``predicate`` (used to replace orphaned quarantine rows)."""
        self._table(name).delete(predicate)

    def commits(self, name: str, after: int | None = None) -> list[Commit]:
        """Commits newer than ``after`` (all when None), oldest first."""
        if not self.exists(name):
            return []
        from deltalake import DeltaTable

        out = []
        for entry in DeltaTable(str(self.path(name))).history():
            version = int(entry["version"])
            if after is not None and version <= after:
                continue
            raw = entry.get(METADATA_KEY)
            out.append(
                Commit(
                    version=version,
                    timestamp_ms=int(entry.get("timestamp", 0)),
                    operation=str(entry.get("operation", "")),
                    record=json.loads(raw) if isinstance(raw, str) else None,
                )
            )
        return sorted(out, key=lambda c: c.version)


def _schema_mode(
    mode: WriteMode, predicate: str | None, merge_schema: bool
) -> Literal["merge", "overwrite"] | None:
    if merge_schema:
        return "merge"
    if mode == "overwrite" and predicate is None:
        return "overwrite"
    return None
