"""An intake source's buffer: posted requests, durable before they are acknowledged.

One SQLite file per source (WAL, ``synchronous=FULL``: a committed request survives a
crash of the process and of the machine). Each request is one row, numbered in arrival
order, with its Idempotency-Key (unique: a retry finds the first one) and a digest of
its body (a key reused for another body is refused). Landing a batch clears the bodies
of the requests it covers but keeps their keys for ``KEEP_KEYS_S``, so late retries are
still recognized.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEEP_KEYS_S = 7 * 24 * 3600
"""How long a landed request's key is remembered (a retry within it is a duplicate)."""
BUSY_MS = 10_000


@dataclass(frozen=True)
class Accepted:
    sequence: int
    rows: int
    duplicate: bool


@dataclass(frozen=True)
class Buffered:
    sequence: int
    key: str | None
    received_us: int
    body: bytes


class KeyReused(Exception):
    """The Idempotency-Key was used before for a different body."""


class BufferFull(Exception):
    """The buffer holds as many waiting rows as it may (with this request: more)."""

    def __init__(self, waiting: int) -> None:
        super().__init__(waiting)
        self.waiting = waiting


class IntakeBuffer:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # a cleared body is overwritten, not left in a free page (personal data)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS requests (sequence INTEGER PRIMARY KEY AUTOINCREMENT, "
            "key TEXT UNIQUE, digest TEXT NOT NULL, received_us INTEGER NOT NULL, "
            "rows INTEGER NOT NULL, body BLOB)"
        )

    def close(self) -> None:
        self._db.close()

    def add(self, key: str | None, body: bytes, rows: int, max_waiting: int) -> Accepted:
        """Store a request; ``BufferFull`` when its rows would take the waiting rows past
        ``max_waiting`` (an empty buffer takes any one request)."""
        digest = hashlib.sha256(body).hexdigest()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if key is not None:
                found = db.execute(
                    "SELECT sequence, digest, rows FROM requests WHERE key = ?", (key,)
                ).fetchone()
                if found is not None:
                    db.execute("COMMIT")
                    if found[1] != digest:
                        raise KeyReused(key)
                    return Accepted(int(found[0]), int(found[2]), duplicate=True)
            (waiting,) = db.execute(
                "SELECT coalesce(sum(rows), 0) FROM requests WHERE body IS NOT NULL"
            ).fetchone()
            if int(waiting) and int(waiting) + rows > max_waiting:
                db.execute("COMMIT")
                raise BufferFull(int(waiting))
            cursor = db.execute(
                "INSERT INTO requests (key, digest, received_us, rows, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, digest, time.time_ns() // 1000, rows, body),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        assert cursor.lastrowid is not None
        return Accepted(int(cursor.lastrowid), rows, duplicate=False)

    def waiting(self, after: int) -> tuple[int, int]:
        """Requests and rows past ``after`` not landed yet."""
        count, rows = self._db.execute(
            "SELECT count(*), coalesce(sum(rows), 0) FROM requests "
            "WHERE sequence > ? AND body IS NOT NULL",
            (after,),
        ).fetchone()
        return int(count), int(rows)

    def read(self, after: int, max_rows: int) -> list[Buffered]:
        """Requests past ``after`` in order, whole, until ``max_rows`` is reached."""
        out: list[Buffered] = []
        total = 0
        for sequence, key, received, rows, body in self._db.execute(
            "SELECT sequence, key, received_us, rows, body FROM requests "
            "WHERE sequence > ? AND body IS NOT NULL ORDER BY sequence",
            (after,),
        ):
            if out and total + rows > max_rows:
                break
            out.append(Buffered(int(sequence), key, int(received), bytes(body)))
            total += rows
        return out

    def landed(self, upto: int) -> None:
        """Forget the bodies of requests up to ``upto`` (the table holds them), and the
        keys of requests landed long ago."""
        cutoff = time.time_ns() // 1000 - KEEP_KEYS_S * 1_000_000
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("UPDATE requests SET body = NULL WHERE sequence <= ?", (upto,))
        self._db.execute(
            "DELETE FROM requests WHERE body IS NULL AND received_us < ? AND sequence < "
            "(SELECT max(sequence) FROM requests)",
            (cutoff,),
        )
        self._db.execute("COMMIT")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # old bodies out of the journal

    def erase(self, column: str, values: set[str], normalize: Callable[[Any], str]) -> int:
        """Drop the waiting rows whose ``column`` is one of ``values`` (compared after
        ``normalize``) from their requests; the journal is emptied after. Returns how many
        rows went. A request keeps its key and digest: a retry of it stays a duplicate."""
        import orjson

        removed = 0
        targets = {normalize(v) for v in values}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            found = self._db.execute(
                "SELECT sequence, body FROM requests WHERE body IS NOT NULL"
            ).fetchall()
            for sequence, body in found:
                from gristmill.execution.sources.intake import parse_body

                items = parse_body(bytes(body))
                kept = [
                    item
                    for item in items
                    if item.get(column) is None or normalize(item[column]) not in targets
                ]
                if len(kept) == len(items):
                    continue
                removed += len(items) - len(kept)
                self._db.execute(
                    "UPDATE requests SET body = ?, rows = ? WHERE sequence = ?",
                    (b"\n".join(orjson.dumps(i) for i in kept) or None, len(kept), sequence),
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed


def buffer_path(state: Path, source: str) -> Path:
    return state / "intake" / f"{source}.db"
