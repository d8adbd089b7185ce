"""The prediction log's spool: every answer is on disk before the response leaves.

Each server worker appends one JSON line per logged prediction to a spool file of its
own with a plain ``write(2)`` before it sends the response, so the kernel keeps the row
if the process is killed right after. A drainer (one per server, ``serving/drainer.py``)
moves the complete lines into the Delta tables. Each commit also records, as a Delta app
transaction per spool file, the byte offset it covers; the drainer skips what a table
already holds, so a row is committed exactly once however the drainer or the workers die.

A writer holds an exclusive ``flock`` on its file for as long as it lives; a file whose
lock is free belongs to a writer that is gone and is deleted once fully drained. Files
are created under a hidden name, locked, then renamed, so the drainer never sees an
unlocked live file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gristmill import failpoints
from gristmill.errors import PredictionLogError
from gristmill.serving.log import SCHEMA, SERVICE, decisions, decisions_table, log_table, table
from gristmill.storage.lake import Lake

logger = logging.getLogger("gristmill.serving")

SUFFIX = ".jsonl"
DRAIN_LOCK = ".drain.lock"
APP_PREFIX = "gristmill-spool/"
ROTATE_BYTES = 64 << 20
READ_BYTES = 16 << 20
"""At most this much of one file per pass, so a large backlog drains in bounded memory."""


class Spool:
    """One worker's spool: append-only files, rotated at ``rotate_bytes``."""

    def __init__(self, folder: Path, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.rotate_bytes = rotate_bytes
        self.fd = -1
        self.size = 0
        self.healthy = True
        """False after a refused write, until a write succeeds (readiness says so)."""
        self.path = self._open()

    def _open(self) -> Path:
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        hidden = self.folder / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.folder / f"{name}{SUFFIX}"
        os.rename(hidden, path)
        self.fd, self.size = fd, 0
        return path

    def write(self, data: bytes) -> None:
        """Append whole lines; raise ``PredictionLogError`` if the disk refuses them.

        A refused write may have left part of a line: it is cut off again, so the lines
        written after the disk has room are whole (else the next file starts clean).
        """
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self.healthy = False
            self._cut_back()
            raise PredictionLogError(
                f"the prediction log's spool {self.path} cannot be written: {exc.strerror}",
                hint="free disk space in the project's .gristmill folder; nothing was answered",
            ) from None
        self.healthy = True
        self.size += len(data)
        if self.size >= self.rotate_bytes:
            old = self.fd
            self.path = self._open()
            os.close(old)  # releases its lock: the drainer finishes and deletes it

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self.fd, self.size)
        except OSError:
            old = self.fd
            try:
                self.path = self._open()  # the drainer keeps the old file's torn tail aside
            except OSError:
                return  # nothing can be written at all: every request answers 503
            os.close(old)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def encode(rows: list[tuple[Any, ...]]) -> bytes:
    if len(rows) == 1:
        return orjson.dumps(rows[0], option=orjson.OPT_APPEND_NEWLINE)
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows)


@dataclass
class _Chunk:
    """The complete lines read from one spool file in one pass."""

    path: Path
    start: int
    data: bytes
    writer_gone: bool = False
    bad: list[bytes] = field(default_factory=list, repr=False)
    """Lines that are not rows, kept aside in ``<file>.bad`` once the chunk is committed."""
    _rows: list[list[Any]] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def rows(self) -> list[list[Any]]:
        if self._rows is None:
            self._rows = _parse(self.data, self.bad)
        return self._rows

    def rows_after(self, offset: int) -> list[list[Any]]:
        """The rows whose line ends after ``offset`` (a line boundary a commit recorded)."""
        if offset <= self.start:
            return self.rows()
        if offset >= self.end:
            return []
        return _parse(self.data[offset - self.start :], [])


def _parse(lines: bytes, bad: list[bytes]) -> list[list[Any]]:
    """JSON lines (no raw newline inside: orjson's output) in one parse; lines that are
    not a row (a disk that filled mid-write, a hand edit) are set aside in ``bad``."""
    try:
        return orjson.loads(b"[" + lines[:-1].replace(b"\n", b",") + b"]")  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        rows = []
        for line in lines.splitlines():
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                row = None
            if isinstance(row, list) and len(row) == len(SCHEMA):
                rows.append(row)
            elif line.strip():
                bad.append(line)
        return rows


class Drainer:
    """Moves spool lines into the log tables, exactly once, while it holds the drain lock."""

    def __init__(self, folder: Path, lake: Lake) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.lake = lake
        self.positions: dict[str, int] = {}
        """Bytes of each file known to be committed to every table it feeds."""
        self._committed: dict[tuple[str, str], int] = {}
        self._lock_fd = -1
        self.written = 0
        self.failures = 0
        self.last_error = ""

    def acquire(self) -> bool:
        """Take the drain lock (one drainer per project at a time); False if held."""
        if self._lock_fd >= 0:
            return True
        fd = os.open(self.folder / DRAIN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self._committed.clear()  # another drainer may have committed since
        return True

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def files(self) -> list[Path]:
        return sorted(self.folder.glob(f"*{SUFFIX}"))

    def live_writers(self) -> int:
        """How many spool files still have a writer."""
        return sum(not _writer_gone(p) for p in self.files())

    def drain(self) -> int:
        """One pass over every spool file; return the rows committed (0 without the lock)."""
        if not self.acquire():
            return 0
        total = 0
        while True:
            chunks = [c for p in self.files() if (c := self._read(p)) is not None]
            if not chunks:
                return total
            try:
                total += self._commit(chunks)
            except Exception as exc:  # noqa: BLE001 - keep the lines; the next pass retries
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "prediction log: committing spooled rows failed, they stay in %s and are "
                    "retried: %s (check that the lake can be written: its disk and "
                    "permissions, or its bucket, network and credentials)",
                    self.folder,
                    self.last_error,
                )
                return total
            for chunk in chunks:
                if chunk.bad:
                    self._set_aside(chunk)
                self.positions[chunk.path.name] = chunk.end
                if chunk.writer_gone and chunk.end == _size(chunk.path):
                    self._retire(chunk.path)
            if all(c.end - c.start < READ_BYTES for c in chunks):
                return total

    def _read(self, path: Path) -> _Chunk | None:
        gone = _writer_gone(path)  # checked before reading: a gone writer adds nothing later
        start = self.positions.get(path.name, 0)
        try:
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read(READ_BYTES)
        except FileNotFoundError:
            self.positions.pop(path.name, None)
            return None
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            if gone and data:
                self._torn(path, start, len(data))
            elif gone:
                self._retire(path)
            return None
        return _Chunk(path, start, complete, writer_gone=gone)

    def _commit(self, chunks: list[_Chunk]) -> int:
        services = sorted({row[SERVICE] for chunk in chunks for row in chunk.rows()})
        written = 0
        for service in services:
            log_name, decisions_name = log_table(service), decisions_table(service)
            in_step = all(
                self._done(decisions_name, c.name) == self._done(log_name, c.name) for c in chunks
            )
            data = table(self._new(log_name, service, chunks))
            self._write(log_name, data, chunks)
            failpoints.hit("after_log_commit", service)
            written += data.num_rows
            if not in_step:  # a drainer died between the two commits: what decisions lack
                data = table(self._new(decisions_name, service, chunks))
            self._write(decisions_name, decisions(data), chunks)
        self.written += written
        return written

    def _new(self, name: str, service: str, chunks: list[_Chunk]) -> list[list[Any]]:
        """The rows of ``service`` that ``name`` does not hold yet, by its commits' offsets."""
        return [
            row
            for chunk in chunks
            for row in chunk.rows_after(self._done(name, chunk.name))
            if row[SERVICE] == service
        ]

    def _done(self, name: str, file: str) -> int:
        key = (name, file)
        if key not in self._committed:
            self._committed[key] = self.lake.transaction_version(name, APP_PREFIX + file) or 0
        return self._committed[key]

    def _write(self, name: str, data: Any, chunks: list[_Chunk]) -> None:
        marks = {c.name: c.end for c in chunks if c.end > self._done(name, c.name)}
        if not marks or not data.num_rows:
            return
        self.lake.write(
            name,
            data,
            mode="append",
            record={"kind": "prediction_log"},
            transactions={APP_PREFIX + f: end for f, end in marks.items()},
        )
        for file, end in marks.items():
            self._committed[(name, file)] = end

    def _retire(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.positions.pop(path.name, None)
        for key in [k for k in self._committed if k[1] == path.name]:
            del self._committed[key]

    def _set_aside(self, chunk: _Chunk) -> None:
        kept = chunk.path.with_suffix(".bad")
        with open(kept, "ab") as handle:
            handle.write(b"".join(line + b"\n" for line in chunk.bad))
        logger.warning(
            "prediction log: %d line(s) of %s are not rows (a write cut short?); kept in %s, "
            "not logged",
            len(chunk.bad),
            chunk.path,
            kept,
        )

    def _torn(self, path: Path, start: int, size: int) -> None:
        kept = path.with_suffix(".torn")
        path.rename(kept)
        self.positions.pop(path.name, None)
        logger.warning(
            "prediction log: %s ends with %d bytes that are not a whole line (its writer died "
            "mid-write); kept as %s, not logged",
            path,
            size,
            kept,
        )


def _writer_gone(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the lock we may have taken
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@contextmanager
def drained(folder: Path, lake: Lake) -> Iterator[Drainer]:
    """A drainer for one-off use (tests, ``gristmill predictions``), released after."""
    drainer = Drainer(folder, lake)
    try:
        yield drainer
    finally:
        drainer.release()
