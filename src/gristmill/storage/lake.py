"""The lake: one Delta table per project table, written through ``deltalake``.

Every write is one atomic Delta commit, so a crashed writer leaves at most unreferenced
Parquet files and never a visible half-written version. Each commit carries the
materialization record as custom metadata under ``gristmill``; that is what lets the
catalog be rebuilt from the lake after a crash between the two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gristmill import failpoints
from gristmill.errors import (
    LakeError,
    MissingDataError,
    UnsupportedPathError,
    VersionNotFoundError,
)
from gristmill.storage.location import Location, store_error

if TYPE_CHECKING:  # heavy imports stay lazy so that a no-op run starts fast
    import pyarrow as pa
    import pyarrow.dataset as pads
    from deltalake import DeltaTable

METADATA_KEY = "gristmill"
PLAIN_PARQUET_FEATURES = frozenset({"timestampNtz"})
"""Delta reader features that need nothing beyond reading the Parquet files."""
QUARANTINE_SUFFIX = "__quarantine"
UNSUPPORTED_IN_PATH = re.compile(r"[\[\]^|\\\x00-\x1f\x7f]|%[0-9A-Fa-f]{2}")
"""What delta-rs (1.6) cannot open in a local table path: it reads ``[ ] ^ |`` as part of
a URL host, decodes ``%XX`` as an escape, and refuses backslashes and control characters.
Spaces, ``#``, ``%``, ``?``, quotes and any other Unicode are fine."""

WriteMode = Literal["append", "overwrite"]
STAGING_FOLDER = ".staging"
"""Below the lake root: the rows of a merge in progress, in files without a name."""
COMMIT_RETRIES = 100
"""How often a commit that lost the race for its version number tries the next one
(delta-rs checks each time that the winner's changes do not conflict). delta-rs's 15 ran
out with three processes appending to one table on S3 on a busy machine."""
MERGED_FILE_SIZE = 16 * 1024 * 1024
"""The Parquet file size of a table kept by merges (a source's, by primary key): a merge
rewrites each file holding a changed key, so a smaller file than Delta's default (about
100 MB, made for appends) means less rewritten per change."""


@dataclass(frozen=True)
class Written:
    version: int
    rows: int
    schema: pa.Schema


class _RowCounter:
    """Counts rows as a stream passes through to the writer (no second read)."""

    def __init__(self) -> None:
        self.rows = 0

    def wrap(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        import pyarrow as pa

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                self.rows += batch.num_rows
                yield batch

        return pa.RecordBatchReader.from_batches(reader.schema, batches())


@contextmanager
def _staged(
    folder: Path, data: pa.RecordBatchReader | pa.Table, key: str
) -> Iterator[tuple[pa.RecordBatchReader | pa.Table, Callable[[], int], tuple[str, str] | None]]:
    """``data`` for a merge, how many rows it holds, and the range of its ``key`` as two
    SQL literals (None when a range cannot bound it: a NULL key, a type other than an
    integer or a string, no rows). A stream is written to a file below ``folder`` first
    (read once from its source, the rows have to be seen before the merge starts) and
    read back from there. The file has no name (unlinked when made): whatever ends the
    process, a killed one too, nothing of it stays behind for a later erasure to miss."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        bounds = _KeyRange(data.schema.field(key).type)
        bounds.add(data.column(key))
        yield data, lambda: data.num_rows, bounds.literals()
        return
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder, prefix="merge-") as file:
        bounds = _KeyRange(data.schema.field(key).type)
        rows = 0
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        with pa.ipc.new_file(pa.PythonFile(file, mode="w"), data.schema, options=options) as out:
            for batch in data:
                out.write_batch(batch)
                bounds.add(batch.column(key))
                rows += batch.num_rows
        file.flush()
        mapped = Path(f"/proc/self/fd/{file.fileno()}")  # Linux: mapped, not copied in
        with pa.memory_map(str(mapped)) if mapped.exists() else pa.PythonFile(file) as source:
            staged = pa.ipc.open_file(source)
            batches = (staged.get_batch(i) for i in range(staged.num_record_batches))
            reader = pa.RecordBatchReader.from_batches(data.schema, batches)
            yield reader, lambda: rows, bounds.literals()


class _KeyRange:
    """The smallest and largest value of a key column, seen a chunk at a time."""

    def __init__(self, kind: pa.DataType) -> None:
        import pyarrow as pa

        self.integer = pa.types.is_integer(kind)
        self.bounded = self.integer or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        self.low: Any = None
        self.high: Any = None

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        import pyarrow.compute as pc

        if not self.bounded or len(values) == 0:
            return
        if values.null_count:  # a NULL key matches by IS NOT DISTINCT FROM, not a range
            self.bounded = False
            return
        low, high = (v.as_py() for v in pc.min_max(values).values())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def literals(self) -> tuple[str, str] | None:
        if not self.bounded or self.low is None:
            return None
        if self.integer:
            return str(int(self.low)), str(int(self.high))
        return _string_literal(self.low), _string_literal(self.high)


def _string_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp_ms: int
    operation: str
    record: Mapping[str, Any] | None
    """The materialization record Gristmill stored with the commit; None if foreign."""


SCRATCH = "scratch"
STAGING = "lake-staging"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@lru_cache(maxsize=1)
def _sampler() -> Any:
    """One in-memory DuckDB for first-row reads; each read takes a cursor of it."""
    import duckdb

    return duckdb.connect(config={"threads": 2})


FIRST_ROWS = 10_000
"""Reads of at most this many rows (samples) go through DuckDB's early-stopping scan."""


class Lake:
    """Delta tables below one root: a local folder or a prefix on object storage.

    On object storage, delta-rs reads and commits the tables there (an S3 commit is a
    conditional PUT of the next log entry: concurrent writers are safe without a lock
    table). DuckDB reads Parquet from local paths, so a remote version's data files are
    copied once into ``cache`` (Delta data files never change under their name: a copy
    is exact for as long as it exists); a read with a limit streams from the store.
    """

    def __init__(self, root: Path | str | Location, *, cache: Path | None = None) -> None:
        self.location = root if isinstance(root, Location) else Location(str(root))
        if not self.location.remote:
            _check_supported(self.location.folder)
        self.cache = cache or Path(tempfile.gettempdir()) / "gristmill-lake-cache"
        """Local copies of a remote lake's data files (a local lake needs none)."""
        self._handles: dict[str, DeltaTable] = {}
        """Tables this process wrote, kept open at the version it committed."""
        self._lock = threading.Lock()

    @property
    def remote(self) -> bool:
        return self.location.remote

    @property
    def root(self) -> Path:
        """The lake's local folder (a lake on object storage has none)."""
        return self.location.folder

    def path(self, name: str) -> Path:
        return self.root / name

    def uri(self, name: str) -> str:
        """The table's location as delta-rs takes it (a path, or ``s3://…``)."""
        return self.location.join(name)

    def quarantine_name(self, name: str) -> str:
        return f"{name}{QUARANTINE_SUFFIX}"

    def exists(self, name: str) -> bool:
        return self.location.is_dir(name, "_delta_log")

    def latest_version(self, name: str) -> int | None:
        handle = self._handles.get(name)
        if handle is not None and not self.has_commit_after(name, handle.version()):
            return int(handle.version())  # this process wrote the newest: no log replay
        if not self.exists(name):
            return None

        return int(self._table(name).version())

    def _table(self, name: str, version: int | None = None) -> DeltaTable:
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        try:
            return DeltaTable(self.uri(name), version=version)
        except TableNotFoundError:
            if version is not None and self.exists(name):  # its log files were cleaned up
                raise VersionNotFoundError(
                    f"table {name!r} has no version {version} any more: its log is past "
                    "the table's log retention (delta.logRetentionDuration, 30 days by "
                    "default), or an erasure kept only the version it wrote "
                    "(`gristmill erasures`)",
                    hint=f"`gristmill history {name}` lists its versions",
                ) from None
            raise LakeError(
                f"table {name!r} has no Delta table at {self.uri(name)}",
                hint="run `gristmill run` to build it",
            ) from None
        except OSError as exc:
            raise store_error(f"cannot read table {name!r} at {self.uri(name)}", exc) from None
        except DeltaError as exc:
            if version is not None:
                raise VersionNotFoundError(
                    f"table {name!r} has no version {version}",
                    hint=f"`gristmill history {name}` lists its versions",
                ) from exc
            raise LakeError(f"cannot open table {name!r}: {exc}") from exc

    def has_version(self, name: str, version: int) -> bool:
        """Whether ``version`` of ``name`` can still be read: its log and its data files."""
        try:
            table = self._table(name, version)
            self._require_files(name, version, [_local_path(u) for u in table.file_uris()])
        except (LakeError, VersionNotFoundError, MissingDataError):
            return False
        return True

    def dataset(self, name: str, version: int) -> pads.Dataset:
        """The version as an Arrow dataset: its Parquet files read natively where that is
        exact, else through delta-rs.

        delta-rs's dataset reads through a Python file system; an Arrow read-ahead thread
        still holding one of its buffers when the interpreter exits aborted the process
        (``terminate called without an active exception``) after half the reads of a
        table with many files. Arrow's own file system reads have no such buffers.
        """
        import pyarrow as pa
        import pyarrow.dataset as pads

        table = self._open(name, version)
        files = [_local_path(uri) for uri in table.file_uris()]
        self._require_files(name, version, files)
        if self._plain(table):
            schema = pa.schema(table.schema().to_arrow())
            if self.remote:  # streamed from the store: a read with a limit reads little
                keys = [self.location.key_of(f) for f in files]
                return pads.dataset(
                    keys, schema=schema, format="parquet", filesystem=self.location.fs
                )
            return pads.dataset(files, schema=schema, format="parquet")
        return table.to_pyarrow_dataset()

    def changed_ranges(
        self, name: str, old: int, new: int, column: str
    ) -> list[tuple[Any, Any]] | None:
        """The [min, max] of ``column`` in each data file that versions ``old`` and ``new``
        do not share (added or removed between them), from the Delta log's file statistics;
        None when a changed file has no statistics for the column (anything may differ)."""
        before, after = self._file_ranges(name, old, column), self._file_ranges(name, new, column)
        changed = [
            bounds
            for path, bounds in (*before.items(), *after.items())
            if (path in before) != (path in after)
        ]
        if any(lo is None or hi is None for lo, hi in changed):
            return None
        return changed

    def column_ranges(self, name: str, column: str) -> list[tuple[Any, Any]] | None:
        """The [min, max] of ``column`` in each data file of the latest version ([] for no
        table); None when a file has no statistics for it."""
        latest = self.latest_version(name) if name not in self._handles else None
        if name not in self._handles and latest is None:
            return []
        version = self._handles[name].version() if name in self._handles else latest
        assert version is not None
        ranges = list(self._file_ranges(name, version, column).values())
        if any(lo is None or hi is None for lo, hi in ranges):
            return None
        return ranges

    def version_bytes(self, name: str, version: int) -> int:
        """The size of a version's data files, from its log (what an engine would read)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        actions = pa.table(self._open(name, version).get_add_actions(flatten=False))
        return int(pc.sum(actions.column("size_bytes")).as_py() or 0)

    def decoded_bytes(self, name: str, version: int) -> int:
        """What a version takes in memory, at least: for fixed-width columns their rows
        times their width; for text, lists and the like, their pages' uncompressed size
        plus an offset per row (from the files' footers: the log's sizes are compressed,
        and a column that repeats compresses to almost nothing)."""
        import pyarrow.dataset as pads

        dataset = self.dataset(name, version)
        width, variable = 0.0, set()
        for field in dataset.schema:
            try:
                width += field.type.bit_width / 8
            except ValueError:  # not fixed-width
                variable.add(field.name)
        total = 0.0
        for fragment in dataset.get_fragments():
            if not isinstance(fragment, pads.ParquetFileFragment):
                continue
            metadata = fragment.metadata
            total += metadata.num_rows * (width + 4 * len(variable))
            for i in range(metadata.num_row_groups):
                group = metadata.row_group(i)
                for c in range(group.num_columns):
                    chunk = group.column(c)
                    if chunk.path_in_schema.split(".")[0] in variable:
                        total += chunk.total_uncompressed_size
        return int(total)

    def _file_ranges(self, name: str, version: int, column: str) -> dict[str, tuple[Any, Any]]:
        import pyarrow as pa

        actions = pa.table(self._open(name, version).get_add_actions(flatten=True))
        names = actions.column_names
        paths = actions.column("path").to_pylist()
        if f"min.{column}" not in names or f"max.{column}" not in names:
            return {p: (None, None) for p in paths}
        lows = actions.column(f"min.{column}").to_pylist()
        highs = actions.column(f"max.{column}").to_pylist()
        return dict(zip(paths, zip(lows, highs, strict=True), strict=True))

    @staticmethod
    def _plain(table: DeltaTable) -> bool:
        features = set(table.protocol().reader_features or [])
        return not (features - PLAIN_PARQUET_FEATURES or table.metadata().partition_columns)

    def _open(self, name: str, version: int) -> DeltaTable:
        handle = self._handles.get(name)
        if handle is not None and handle.version() == version:
            # Written by this process: the same immutable version, without reopening the log.
            return handle
        return self._table(name, version)

    def parquet_files(self, name: str, version: int) -> list[str] | None:
        """The Parquet files that make up a version, when reading them plainly is exact.

        None when the version needs Delta semantics a plain Parquet reader lacks (deletion
        vectors, column mapping, partition values kept in the log) or has no files; read
        the ``dataset`` then.
        """
        table = self._open(name, version)
        files = [_local_path(uri) for uri in table.file_uris()]
        if not self.remote:
            self._require_files(name, version, files)
        if not self._plain(table):
            return None
        if self.remote:
            files = self._cached(name, version, files)
        return files or None

    def _cached(self, name: str, version: int, uris: list[str]) -> list[str]:
        """Local copies of a remote version's data files (copied now where missing)."""
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow.fs as pafs

        local = pafs.LocalFileSystem()
        paths = [self.cache / self.location.key_of(u) for u in uris]
        missing = [(u, p) for u, p in zip(uris, paths, strict=True) if not p.is_file()]

        def fetch(item: tuple[str, Path]) -> None:
            uri, path = item
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            try:
                pafs.copy_files(
                    self.location.key_of(uri),
                    str(scratch),
                    source_filesystem=self.location.fs,
                    destination_filesystem=local,
                )
                os.replace(scratch, path)
            finally:
                scratch.unlink(missing_ok=True)

        if missing:
            self._require_files(name, version, [u for u, _ in missing])
            try:
                with ThreadPoolExecutor(max_workers=8) as pool:
                    list(pool.map(fetch, missing))
            except OSError as exc:
                raise store_error(f"copying table {name!r} version {version}", exc) from None
        return [str(p) for p in paths]

    def _require_files(self, name: str, version: int, files: list[str]) -> None:
        """Fail naming the table and version when data files of it are gone."""
        import pyarrow.fs as pafs

        if self.remote:
            try:
                infos = self.location.fs.get_file_info([self.location.key_of(f) for f in files])
            except OSError as exc:
                raise store_error(f"listing table {name!r} version {version}", exc) from None
            missing = [i.path for i in infos if i.type == pafs.FileType.NotFound]
        else:
            missing = [f for f in files if f.startswith("/") and not Path(f).is_file()]
        if missing:
            raise MissingDataError(
                f"table {name!r} version {version} is missing {len(missing)} of its "
                f"{len(files)} data file(s), e.g. {missing[0]}",
                hint="they were deleted or moved outside gristmill: restore them, or build "
                f"a new version with `gristmill run {name} --full-refresh`",
            )

    def read(
        self,
        name: str,
        version: int,
        *,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        if limit is not None and limit <= FIRST_ROWS and not self.remote:
            first = self._first_rows(name, version, limit, columns)
            if first is not None:
                return first
        dataset = self.dataset(name, version)
        try:
            if limit is not None:  # Arrow takes a 32-bit count: past 2**31 - 1 means "all"
                return dataset.head(min(limit, 2**31 - 1), columns=columns)
            return dataset.to_table(columns=columns)
        except OSError as exc:
            if not self.remote:
                raise
            raise store_error(f"reading table {name!r} version {version}", exc) from None

    def _first_rows(
        self, name: str, version: int, limit: int, columns: list[str] | None
    ) -> pa.Table | None:
        """A version's first rows through DuckDB, which decodes only the pages it needs
        (Arrow's ``head`` decodes whole row groups: 0.5 s for 20 rows of a 1M-row group);
        None where the files are not plain Parquet (read the dataset then)."""
        import pyarrow as pa

        table = self._open(name, version)
        if not self._plain(table):
            return None
        files = [_local_path(uri) for uri in table.file_uris()]
        if not files:
            return None
        self._require_files(name, version, files)
        schema = pa.schema(table.schema().to_arrow())
        wanted = columns or schema.names
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in wanted)
        cursor = _sampler().cursor()
        try:
            relation = cursor.sql(
                f"SELECT {select} FROM read_parquet($files, can_have_nan = true) LIMIT {limit}",
                params={"files": files},
            )
            rows = relation.to_arrow_table()
        finally:
            cursor.close()
        try:
            return rows.cast(pa.schema([schema.field(c) for c in wanted]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
            return None  # a type DuckDB reads otherwise than Delta: the exact, slower read

    def count(self, name: str, version: int) -> int:
        """Rows of a version, from the log's statistics (this process's handle when it
        wrote that version: no log replay)."""
        return int(self._open(name, version).count())

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
        transactions: Mapping[str, int] | None = None,
        no_stats: Sequence[str] = (),
        merged: bool = False,
    ) -> Written:
        """Commit ``data`` as the next version of ``name``; say which version and rows.

        ``no_stats``: columns kept out of the Delta log's file statistics (personal data:
        a min/max in the log outlives the rows it came from).

        ``merged``: the table is kept by merges from now on: its files are written at
        ``MERGED_FILE_SIZE`` (a new table keeps the size as its property, which merges
        follow).

        ``transactions`` (app id -> version) ride in the same commit as Delta app
        transactions: a writer that records how far it got there commits each part once.
        """
        import pyarrow as pa
        from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
        from deltalake.exceptions import DeltaError

        path = self.uri(name)
        counter = _RowCounter()
        stream = data if isinstance(data, pa.Table) else counter.wrap(data)
        handle = self._handles.get(name)
        properties = CommitProperties(
            custom_metadata={METADATA_KEY: json.dumps(record)},
            app_transactions=[Transaction(app, v) for app, v in (transactions or {}).items()],
            max_commit_retries=COMMIT_RETRIES,
        )
        configuration = dict(_stats_configuration([f.name for f in data.schema], no_stats) or {})
        if merged:
            configuration[FILE_SIZE_PROPERTY] = str(MERGED_FILE_SIZE)
        created: dict[str, str | None] | None = None
        if configuration and handle is None and not self.exists(name):
            created = dict(configuration)  # a new table; an existing one: keep_out_of_stats
        try:
            write_deltalake(  # type: ignore[misc]
                handle if handle is not None else path,
                stream,
                configuration=created,
                # deltalake's overloads take predicate only with mode="overwrite"; when
                # appending it is None, which the implementation accepts
                mode=mode,  # type: ignore[arg-type]
                schema_mode=_schema_mode(mode, predicate, merge_schema),
                predicate=predicate,
                target_file_size=MERGED_FILE_SIZE if merged else None,
                commit_properties=properties,
                post_commithook_properties=_hooks(),
            )
        except OSError as exc:
            raise store_error(f"writing table {name!r}", exc) from None
        except DeltaError as exc:
            raise LakeError(f"writing table {name!r} failed: {exc}") from exc
        if handle is None:
            handle = DeltaTable(path)
            with self._lock:
                self._handles[name] = handle
        self._clean_log_at_checkpoint(name, handle)
        rows = data.num_rows if isinstance(data, pa.Table) else counter.rows
        return Written(version=handle.version(), rows=rows, schema=data.schema)

    def merge(
        self,
        name: str,
        data: pa.RecordBatchReader | pa.Table,
        *,
        keys: tuple[str, ...],
        record: Mapping[str, Any],
        delete_flag: str | None = None,
        transactions: Mapping[str, int] | None = None,
    ) -> Written:
        """Upsert ``data`` by ``keys`` as the next version of ``name``: a row whose
        ``delete_flag`` column is set deletes its key instead. A column the table lacks is
        added; one it has that ``data`` lacks, or one whose type changed, is refused (the
        table would silently hold nulls or cast values)."""
        import pyarrow as pa

        handle = self._handles.get(name)
        if handle is None or self.has_commit_after(name, handle.version()):
            handle = self._table(name)
        _check_columns(name, pa.schema(handle.schema().to_arrow()), data.schema)
        with _staged(self._staging(), data, keys[0]) as (rows, count, bounds):
            failpoints.hit("merge_staged", name)
            if not _has_stats(handle, keys[0]):
                bounds = None  # personal data: its values stay out of the log, the
                # merge's predicate included (the log outlives the rows)
            self._merge(name, handle, rows, keys, record, delete_flag, transactions, bounds)
        return Written(version=handle.version(), rows=count(), schema=data.schema)

    def _merge(
        self,
        name: str,
        handle: DeltaTable,
        stream: pa.RecordBatchReader | pa.Table,
        keys: tuple[str, ...],
        record: Mapping[str, Any],
        delete_flag: str | None,
        transactions: Mapping[str, int] | None,
        bounds: tuple[str, str] | None,
    ) -> None:
        import pyarrow as pa
        from deltalake import CommitProperties, Transaction
        from deltalake.exceptions import DeltaError

        # null-safe: a row whose key is NULL is one more key, matched again next time
        # (with "=" it matched nothing and landed once more on every merge)
        on = " AND ".join(f'(t."{k}" IS NOT DISTINCT FROM s."{k}")' for k in keys)
        if bounds is not None:  # only the files whose key range meets the rows' are read
            on += f' AND (t."{keys[0]}" >= {bounds[0]}) AND (t."{keys[0]}" <= {bounds[1]})'
        properties = CommitProperties(
            custom_metadata={METADATA_KEY: json.dumps(record)},
            app_transactions=[Transaction(app, v) for app, v in (transactions or {}).items()],
            max_commit_retries=COMMIT_RETRIES,
        )
        try:
            merger = handle.merge(
                stream,
                on,
                source_alias="s",
                target_alias="t",
                merge_schema=True,
                commit_properties=properties,
                post_commithook_properties=_hooks(),
            )
            if delete_flag is not None:
                kept = f's."{delete_flag}" IS NULL'
                # an internal flag (a change log's delete) is not a column of the table
                hidden = [delete_flag] if delete_flag.startswith("__gm") else None
                merger = (
                    merger.when_matched_delete(predicate=f's."{delete_flag}" IS NOT NULL')
                    .when_matched_update_all(predicate=kept, except_cols=hidden)
                    .when_not_matched_insert_all(predicate=kept, except_cols=hidden)
                )
            else:
                merger = merger.when_matched_update_all().when_not_matched_insert_all()
            before = handle.version()
            merger.execute()
            if handle.version() == before:  # nothing to merge: Delta commits nothing, but
                # the state (record, app transaction) must still become a version
                from deltalake import write_deltalake

                empty = pa.schema(handle.schema().to_arrow()).empty_table()
                write_deltalake(handle, empty, mode="append", commit_properties=properties)
        except OSError as exc:
            raise store_error(f"merging into table {name!r}", exc) from None
        except DeltaError as exc:
            if "multiple source rows" in str(exc):
                raise LakeError(
                    f"merging into table {name!r}: a key ({', '.join(keys)}) appears more "
                    "than once in the rows read",
                    hint="the primary key must be unique at the source: check primary_key=",
                ) from None
            raise LakeError(f"merging into table {name!r} failed: {exc}") from exc
        with self._lock:
            self._handles[name] = handle
        self._clean_log_at_checkpoint(name, handle)

    def _clean_log_at_checkpoint(self, name: str, table: DeltaTable) -> None:
        """Remove log files past the table's retention (``delta.logRetentionDuration``,
        30 days by default; never the newest checkpoint or what follows it) when the
        commit just made wrote a checkpoint (one stat to know)."""
        if self.location.is_file(name, "_delta_log", f"{table.version():020d}.checkpoint.parquet"):
            table.cleanup_metadata()

    def _staging(self) -> Path:
        """A local folder for a merge's rows: below the lake root (a local lake), else
        the system's temporary folder (the file has no name either way)."""
        if self.remote:
            return Path(tempfile.gettempdir())
        return self.root / STAGING_FOLDER

    def files_folder(self, name: str, tag: str) -> Path:
        """Where an engine's workers write a result of ``name`` for ``commit_files``:
        inside the table's directory (Delta's add actions name files below it); for a
        lake on object storage, a local staging folder laid out the same, which
        ``commit_files`` uploads (workers that share the driver's disk: a local master)."""
        return self._files_root(name) / f"gm-{os.getpid()}-{tag}"

    def _files_root(self, name: str) -> Path:
        if self.remote:
            return self.cache.parent / STAGING / name
        return self.path(name)

    def scratch(self, what: str) -> tempfile.TemporaryDirectory[str]:
        """A private folder for rows on their way (an engine's output that another
        finishes), beside the lake's cache, named with this process's id: removed when
        done, and by ``clean_scratch`` after a crash."""
        folder = self.cache.parent / SCRATCH
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=f"gm-{os.getpid()}-{what}-", dir=folder)

    def clean_scratch(self) -> list[Path]:
        """Remove what killed processes left in the scratch and staging folders (copies of
        rows: an erasure must not miss them); a live process's folders stay."""
        removed = []
        for pattern in (f"{SCRATCH}/gm-*", f"{STAGING}/*/gm-*"):
            for folder in self.cache.parent.glob(pattern):
                pid = folder.name.split("-")[1]
                if pid.isdigit() and not _alive(int(pid)):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
        return removed

    def commit_files(
        self,
        name: str,
        folder: Path,
        *,
        mode: WriteMode,
        record: Mapping[str, Any],
        transactions: Mapping[str, int] | None = None,
    ) -> Written:
        """Commit the Parquet files below ``folder`` (``files_folder``) as the next version
        of ``name``, in one Delta transaction with their statistics; ``transactions`` ride
        in it as app transactions (a writer that records its run there commits once). On
        object storage the files are uploaded first, then committed; the staged copies
        are removed either way."""
        try:
            return self._commit_files(name, folder, mode, record, transactions)
        finally:
            if self.remote:
                shutil.rmtree(folder, ignore_errors=True)

    def _commit_files(
        self,
        name: str,
        folder: Path,
        mode: WriteMode,
        record: Mapping[str, Any],
        transactions: Mapping[str, int] | None,
    ) -> Written:
        from deltalake import CommitProperties, DeltaTable, Transaction
        from deltalake.exceptions import DeltaError
        from deltalake.schema import Schema as DeltaSchema
        from deltalake.transaction import (
            AddAction,
            RemoveAction,
            create_table_with_add_actions,
        )

        from gristmill.storage.file_actions import file_actions

        found = file_actions(self._files_root(name), folder)
        if self.remote:
            self._upload(name, [a.path for a in found.actions])
        properties = CommitProperties(
            custom_metadata={METADATA_KEY: json.dumps(record)},
            app_transactions=[Transaction(app, v) for app, v in (transactions or {}).items()],
            max_commit_retries=COMMIT_RETRIES,
        )
        try:
            if not self.exists(name):
                create_table_with_add_actions(
                    self.uri(name),
                    DeltaSchema.from_arrow(found.schema),
                    found.actions,
                    commit_properties=properties,
                    post_commithook_properties=_hooks(),
                )
            else:
                self._table(name).create_write_transaction(
                    list[AddAction | RemoveAction](found.actions),
                    mode,
                    found.schema,
                    commit_properties=properties,
                    post_commithook_properties=_hooks(),
                )
        except OSError as exc:
            raise store_error(f"committing the files of table {name!r}", exc) from None
        except DeltaError as exc:
            raise LakeError(f"committing the files of table {name!r} failed: {exc}") from exc
        handle = DeltaTable(self.uri(name))
        with self._lock:
            self._handles[name] = handle
        self._clean_log_at_checkpoint(name, handle)
        return Written(version=handle.version(), rows=found.rows, schema=found.schema)

    def _upload(self, name: str, paths: list[str]) -> None:
        """Copy staged files (paths relative to the table) to the table's prefix."""
        from concurrent.futures import ThreadPoolExecutor
        from urllib.parse import unquote

        import pyarrow.fs as pafs

        local = pafs.LocalFileSystem()
        staged = self._files_root(name)

        def upload(path: str) -> None:
            relative = unquote(path)
            pafs.copy_files(
                str(staged / relative),
                self.location.key_of(self.location.join(name, relative)),
                source_filesystem=local,
                destination_filesystem=self.location.fs,
            )

        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(upload, paths))
        except OSError as exc:
            raise store_error(f"uploading the files of table {name!r}", exc) from None

    def keep_out_of_stats(self, name: str, columns: Sequence[str], no_stats: Sequence[str]) -> None:
        """Keep ``no_stats`` out of an existing table's file statistics from its next commit
        on (a commit of its own, before the writer numbers the version it writes; a new
        table gets the property with its first commit)."""
        configuration = _stats_configuration(columns, no_stats)
        if not configuration or not self.exists(name):
            return
        table = self._table(name)
        current = table.metadata().configuration
        if all(current.get(k) == v for k, v in configuration.items()):
            return
        table.alter.set_table_properties(dict(configuration))
        with self._lock:
            self._handles[name] = table

    def transaction_version(self, name: str, app_id: str) -> int | None:
        """The last version that ``app_id`` committed to ``name`` (None: never, or no table)."""
        if not self.exists(name):
            return None
        return self._table(name).transaction_version(app_id)

    def has_commit_after(self, name: str, version: int | None) -> bool:
        """Cheap check (one stat) for a commit newer than ``version``, per the Delta log layout."""
        following = 0 if version is None else version + 1
        return self.location.is_file(name, "_delta_log", f"{following:020d}.json")

    def delete(self, name: str, predicate: str) -> None:
        """Delete rows matching ``predicate`` (used to replace orphaned quarantine rows)."""
        with self._lock:
            self._handles.pop(name, None)
        self._table(name).delete(predicate)

    def tables(self) -> list[str]:
        """Every Delta table in the lake (quarantine tables included), by name."""
        return [n for n in self.location.children() if self.exists(n)]

    def erase(self, name: str, predicate: str, record: Mapping[str, Any]) -> tuple[int, int]:
        """Delete the rows matching ``predicate`` as a new version carrying ``record``;
        the new version and how many rows went."""
        from deltalake import CommitProperties
        from deltalake.exceptions import DeltaError

        with self._lock:
            self._handles.pop(name, None)
        table = self._table(name)
        try:
            metrics = table.delete(
                predicate,
                commit_properties=CommitProperties(
                    custom_metadata={METADATA_KEY: json.dumps(record)},
                    max_commit_retries=COMMIT_RETRIES,
                ),
                post_commithook_properties=_hooks(),
            )
        except OSError as exc:
            raise store_error(f"erasing rows of table {name!r}", exc) from None
        except DeltaError as exc:
            raise LakeError(f"erasing rows of table {name!r} failed: {exc}") from exc
        version = int(table.version())
        entry = self.location.key(name, "_delta_log", f"{version:020d}.json")
        _scrub_predicate(self.location, entry)
        return version, int(metrics.get("num_deleted_rows", 0))

    def forget_history(self, name: str) -> int:
        """Make the latest version the only one: a checkpoint at it, every data file it
        does not use removed (a vacuum with no retention, done here: delta-rs's vacuum
        commits versions of its own) and every log entry before the checkpoint removed
        (their file statistics hold old values); a remote lake's local copies of the
        table go too. Returns the files removed. Earlier versions can no longer be read."""
        table = self._table(name)
        table.create_checkpoint()
        keep = int(table.version())
        used = {self._same(self.location.key_of(_local_path(u))) for u in table.file_uris()}
        removed = 0
        for relative, key in list(self.location.files(name)):
            head = relative.split("/")[-1].split(".")[0]
            if relative.startswith("_delta_log/"):
                stale = "/" not in relative[len("_delta_log/") :] and head.isdigit()
                stale = stale and int(head) < keep
            else:
                stale = relative.endswith(".parquet") and self._same(key) not in used
            if stale:
                self.location.delete(key)
                removed += 1
        if self.remote:
            shutil.rmtree(self.cache / self.location.key(name), ignore_errors=True)
        self.clean_scratch()  # rows a killed run left on their way
        with self._lock:
            self._handles.pop(name, None)
        return removed

    def _same(self, key: str) -> str:
        """One spelling per file (a local path with its links resolved)."""
        return key if self.remote else os.path.realpath(key)

    def files_holding(self, name: str, column: str, values: Sequence[Any]) -> list[str]:
        """Every file of ``name`` — data files, referenced or not, log entries, and a
        remote lake's local copies (``cache/…``) — that still holds one of ``values`` in
        ``column`` (as a value, or as a min/max in the log's file statistics)."""
        import pyarrow.fs as pafs

        texts = {str(v) for v in values}
        found = [
            relative
            for relative, key in self.location.files(name)
            if _file_holds(relative, key, self.location.fs, column, texts)
        ]
        if self.remote:
            copies = Location(str(self.cache / self.location.key(name)))
            found += [
                f"cache/{relative}"
                for relative, key in copies.files()
                if _file_holds(relative, key, pafs.LocalFileSystem(), column, texts)
            ]
        return found

    def commits(self, name: str, after: int | None = None) -> list[Commit]:
        """Commits newer than ``after`` (all when None), oldest first."""
        if not self.exists(name):
            return []

        out = []
        for entry in self._table(name).history():
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


def _scrub_predicate(location: Location, key: str) -> None:
    """delta-rs writes a delete's predicate — the erased value — into the commit's
    provenance (``commitInfo.operationParameters``); keep the operation, not the value.
    Only that line changes (provenance, not table state), replaced whole."""
    lines = location.read_bytes(key).decode().splitlines()
    for i, line in enumerate(lines):
        entry = json.loads(line)
        info = entry.get("commitInfo")
        if info and "predicate" in (info.get("operationParameters") or {}):
            info["operationParameters"]["predicate"] = "(an erased subject)"
            lines[i] = json.dumps(entry, separators=(",", ":"))
    location.replace(key, ("\n".join(lines) + "\n").encode())


def _file_holds(relative: str, key: str, fs: Any, column: str, texts: set[str]) -> bool:
    """Whether a table's file (a data file, or a log entry) holds one of ``texts``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    in_log = relative.startswith("_delta_log")
    if relative.endswith(".parquet") and not in_log:
        data = pq.read_table(key, filesystem=fs)
        if column not in data.column_names:
            return False
        cast = data[column].cast(pa.string())
        return bool(pc.any(pc.is_in(cast, pa.array(sorted(texts)))).as_py())
    if not in_log or not relative.endswith((".json", ".parquet")):
        return False
    if _log_holds(relative, key, fs, column, texts):
        return True
    if relative.endswith(".json"):  # any other mention of a text value (a predicate, a record)
        with fs.open_input_stream(key) as stream:
            text = bytes(stream.read()).decode()
        return any(json.dumps(t)[1:-1] in text for t in texts if not t.isdigit())
    return False


def _log_holds(relative: str, key: str, fs: Any, column: str, texts: set[str]) -> bool:
    """Whether a log file's statistics (an add or remove action's min/max) or any of its
    text holds one of ``texts`` as ``column``'s value."""
    if relative.endswith(".json"):
        with fs.open_input_stream(key) as stream:
            lines = bytes(stream.read()).decode().splitlines()
    else:  # a checkpoint: its add actions' statistics, as JSON text
        import pyarrow.parquet as pq

        data = pq.read_table(key, filesystem=fs)
        lines = []
        for action in ("add", "remove"):
            if action in data.column_names:
                for entry in data[action].to_pylist():
                    if entry and entry.get("stats"):
                        lines.append(json.dumps({action: {"stats": entry["stats"]}}))
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for action in ("add", "remove"):
            stats = (entry.get(action) or {}).get("stats")
            if not stats:
                continue
            parsed = json.loads(stats) if isinstance(stats, str) else stats
            for bound in ("minValues", "maxValues"):
                value = (parsed.get(bound) or {}).get(column)
                if value is not None and str(value) in texts:
                    return True
    return False


@lru_cache(maxsize=1)
def _hooks() -> Any:
    """delta-rs's post-commit hooks for every write: a checkpoint at its interval, but the
    expired-log cleanup only then (``_clean_log_at_checkpoint``). Run after every commit,
    the cleanup lists and stats the whole log folder: a table's commits got slower with
    each version (5.5 -> 10.4 ms from its first 100 to its 600th here, flat 5 ms without)."""
    from deltalake import PostCommitHookProperties

    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


STATS_COLUMNS = "delta.dataSkippingStatsColumns"
FILE_SIZE_PROPERTY = "delta.targetFileSize"


def _has_stats(table: DeltaTable, column: str) -> bool:
    """Whether the table keeps ``column``'s values in its log's statistics."""
    kept = table.metadata().configuration.get(STATS_COLUMNS)
    return kept is None or f"`{column}`" in kept.split(",")


def _stats_configuration(columns: Sequence[str], no_stats: Sequence[str]) -> dict[str, str] | None:
    """The table property that keeps ``no_stats`` out of the log's statistics."""
    if not no_stats:
        return None
    kept = [f"`{c}`" for c in columns if c not in set(no_stats) and not c.startswith("__gm")]
    return {STATS_COLUMNS: ",".join(kept)}


def _check_columns(name: str, table: pa.Schema, incoming: pa.Schema) -> None:
    """Refuse what a merge would get silently wrong: a dropped column, a changed type."""
    from gristmill.errors import SchemaChangeError

    have = {f.name: f.type for f in incoming}
    dropped = [f.name for f in table if f.name not in have]
    if dropped:
        raise SchemaChangeError(
            f"table {name!r}: column {dropped[0]!r} is gone from the source "
            f"({len(dropped)} column(s): {', '.join(dropped)})",
            hint=f"if it was dropped on purpose, rebuild the table without it: "
            f"`gristmill run {name} --full-refresh`; else restore it at the source",
        )
    changed = [
        (f.name, f.type, have[f.name]) for f in table if not _same_type(f.type, have[f.name])
    ]
    if changed:
        column, old, new = changed[0]
        raise SchemaChangeError(
            f"table {name!r}: column {column!r} changed type from {old} to {new}",
            hint=f"declare its type in columns= to cast it, or rebuild the table with the new "
            f"type: `gristmill run {name} --full-refresh`",
        )


def _same_type(old: Any, new: Any) -> bool:
    import pyarrow as pa

    if old == new:
        return True
    # what Delta stores differs in width only from what a reader hands over
    for family in (
        (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view),
        (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view),
    ):
        if any(f(old) for f in family) and any(f(new) for f in family):
            return True
    if pa.types.is_timestamp(old) and pa.types.is_timestamp(new):
        return (old.tz is None) == (new.tz is None)
    return bool(pa.types.is_null(new))


def _check_supported(root: Path) -> None:
    text = str(root.resolve())  # delta-rs resolves symbolic links too
    found = [repr(c) for c in sorted(set(UNSUPPORTED_IN_PATH.findall(text)))]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        found.append("bytes that are not UTF-8")
    if found:
        raise UnsupportedPathError(
            f"the lake folder {text!r} has {', '.join(found)} in its path, which the Delta "
            "Lake library cannot open",
            hint="move the project to a folder without [ ] ^ | \\, control characters or "
            "%XX sequences in its path, or set `lake` in gristmill.toml to such a folder",
        )


def _local_path(uri: str) -> str:
    """A local file as a plain path; delta-rs percent-encodes them (a space as ``%20``),
    which other readers (DuckDB) take literally. Object-store URIs stay as they are."""
    from urllib.parse import unquote, urlsplit

    if uri.startswith("/"):
        return unquote(uri)
    if uri.startswith("file:"):
        return unquote(urlsplit(uri).path)
    return uri


def _schema_mode(
    mode: WriteMode, predicate: str | None, merge_schema: bool
) -> Literal["merge", "overwrite"] | None:
    if merge_schema:
        return "merge"
    if mode == "overwrite" and predicate is None:
        return "overwrite"
    return None
