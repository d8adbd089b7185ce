"""The prediction log: every answered request, appended to a Delta table in the background.

``append`` only puts the record on an in-memory queue, so logging never blocks a
response. A writer thread flushes the queue as one Delta commit when it holds
``max_rows`` records or ``every_s`` seconds passed, and ``close`` (graceful shutdown)
flushes what is left, so nothing is lost.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa

logger = logging.getLogger("gristmill.serving")

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
        self._queue: deque[tuple[Any, ...]] = deque()
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
        # Encoded now (a few microseconds in C) rather than at flush, where encoding
        # thousands of rows at once would hold the GIL and stall responses for ~10 ms.
        self.append_row(_row(record))

    def append_row(self, row: tuple[Any, ...]) -> None:
        self._queue.append(row)
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
            by_service: dict[str, list[tuple[Any, ...]]] = {}
            for r in records:
                by_service.setdefault(r[SERVICE], []).append(r)
            for service, rows in by_service.items():
                table = _table(rows)
                try:
                    self._write(log_table(service), table)
                except Exception as exc:  # noqa: BLE001 - keep the rows, retry at the next flush
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    logger.warning(
                        "prediction log: writing %d row(s) of %s failed, kept for the next "
                        "flush: %s (check the lake's disk and permissions)",
                        len(rows),
                        log_table(service),
                        self.last_error,
                    )
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
                    logger.warning(
                        "%s: %d decision(s) not written (they are in %s): %s",
                        decisions_table(service),
                        served.num_rows,
                        log_table(service),
                        self.last_error,
                    )
            return len(records)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            if not self.flush():
                break


JSON_FIELDS = {"entity", "features", "reasons"}
SERVICE = SCHEMA.names.index("service")


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    """A record in schema order; nested values as JSON text, the time in microseconds."""
    defaults = {"variant": "champion", "served": True}
    values = {**defaults, **record}
    for name in JSON_FIELDS:
        values[name] = orjson.dumps(values[name], default=str).decode()
    values["at"] = round(values["at"].timestamp() * 1_000_000)  # microseconds: fast to Arrow
    return tuple(values.get(name) for name in SCHEMA.names)


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    arrays = [
        pa.array(values, type=pa.int64()).cast(field.type)
        if field.name == "at"
        else pa.array(values, type=field.type)
        for values, field in zip(columns, SCHEMA, strict=True)
    ]
    return pa.table(arrays, schema=SCHEMA)


class ProcessLog:
    """The same log, written by a child process, so this one never builds Arrow tables.

    Building a table and committing it holds this process's GIL for milliseconds, which
    showed as a 2.4 ms p99 at concurrency 1 (0.9 ms without the log). Here ``append``
    encodes the row to one JSON line and queues it; a feeder thread hands the lines to
    the writer process (``python -m gristmill.serving.logwriter``) over a pipe every
    ``every_s``, and ``close`` ends the pipe and waits until the writer flushed. If the
    writer dies, the rest is written in this process (nothing queued is lost).
    """

    def __init__(self, lake_root: str, *, every_s: float = 0.25) -> None:

        self.every_s = every_s
        self._queue: deque[bytes] = deque()
        self._fallback: PredictionLog | None = None
        self._lake_root = lake_root
        self.last_error = ""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gristmill.serving.logwriter", lake_root, str(every_s)],
            stdin=subprocess.PIPE,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="log-feeder", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        self._queue.append(orjson.dumps(_row(record)))

    def _feed(self) -> None:
        while not self._stop.wait(self.every_s):
            self._send()
        self._send()

    def _send(self) -> None:
        lines = [self._queue.popleft() for _ in range(len(self._queue))]
        if not lines:
            return
        if self._fallback is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(b"\n".join(lines) + b"\n")
                self._proc.stdin.flush()
                return
            except (BrokenPipeError, OSError, ValueError) as exc:
                self.last_error = f"log writer process: {exc}; writing in this process"
                logger.warning("prediction log: %s", self.last_error)
                self._fallback = PredictionLog(_lake_writer(self._lake_root))
        for line in lines:
            self._fallback.append_row(tuple(orjson.loads(line)))

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError as exc:
                self.last_error = str(exc)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:  # a writer that hangs is stopped, not waited for
            logger.warning("prediction log writer did not finish in %ss; stopped", timeout)
            self._proc.kill()
        if self._fallback is not None:
            self._fallback.close(timeout)


def _lake_writer(root: str) -> Callable[[str, pa.Table], None]:
    from pathlib import Path

    from gristmill.storage.lake import Lake

    lake = Lake(Path(root))

    def write(table: str, data: pa.Table) -> None:
        lake.write(table, data, mode="append", record={"kind": "prediction_log"})

    return write
