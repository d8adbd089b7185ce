"""The prediction log: every answered request, appended to a Delta table in the background.

``append`` only puts the record on an in-memory queue, so logging never blocks a
response. A writer thread flushes the queue as one Delta commit when it holds
``max_rows`` records or ``every_s`` seconds passed, and ``close`` (graceful shutdown)
flushes what is left, so nothing is lost.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("service", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.int32()),
        pa.field("role", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("features", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("decision", pa.string()),
        pa.field("reasons", pa.string()),
        pa.field("found", pa.bool_()),
        pa.field("latency_ms", pa.float64()),
        pa.field("variant", pa.string()),
        pa.field("served", pa.bool_()),
    ]
)


def log_table(service: str) -> str:
    return f"{service}__prediction_log"


def decisions_table(service: str) -> str:
    return f"{service}__decisions"


DECISIONS = ["request_id", "at", "service", "model_version", "entity", "score", "decision"]


class PredictionLog:
    def __init__(
        self,
        write: Callable[[str, pa.Table], None],
        *,
        max_rows: int = 5_000,
        every_s: float = 1.0,
    ) -> None:
        self._write = write
        self._queue: deque[dict[str, Any]] = deque()
        self.max_rows = max_rows
        self.every_s = every_s
        self.written = 0
        self.failures = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        self._queue.append(record)
        if len(self._queue) >= self.max_rows:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is queued now, one commit per service; return the rows written."""
        with self._lock:
            records = [self._queue.popleft() for _ in range(len(self._queue))]
            if not records:
                return 0
            by_service: dict[str, list[dict[str, Any]]] = {}
            for r in records:
                by_service.setdefault(r["service"], []).append(r)
            for service, rows in by_service.items():
                table = _table(rows)
                try:
                    self._write(log_table(service), table)
                except Exception as exc:  # noqa: BLE001 - keep the rows, retry at the next flush
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._queue.extendleft(reversed(rows))
                    continue
                self.written += len(rows)
                served = table.filter(table["served"]).select(DECISIONS)
                try:
                    if served.num_rows:
                        self._write(decisions_table(service), served)
                except Exception as exc:  # noqa: BLE001 - the log has them; count and go on
                    self.failures += 1
                    self.last_error = f"decisions: {type(exc).__name__}: {exc}"
            return len(records)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            if not self.flush():
                break


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    def dumps(key: str) -> list[str]:
        return [orjson.dumps(r[key], default=str).decode() for r in rows]

    columns = {
        "request_id": [r["request_id"] for r in rows],
        "at": [r["at"] for r in rows],
        "service": [r["service"] for r in rows],
        "model": [r["model"] for r in rows],
        "model_version": [r["model_version"] for r in rows],
        "role": [r.get("role") for r in rows],
        "entity": dumps("entity"),
        "features": dumps("features"),
        "score": [r["score"] for r in rows],
        "decision": [r["decision"] for r in rows],
        "reasons": dumps("reasons"),
        "found": [r["found"] for r in rows],
        "latency_ms": [r["latency_ms"] for r in rows],
        "variant": [r.get("variant", "champion") for r in rows],
        "served": [r.get("served", True) for r in rows],
    }
    return pa.table(columns, schema=SCHEMA)
