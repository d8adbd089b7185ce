"""The execution side of run coordination: who owns a run, its heartbeat, its lifecycle.

``Coordinator.start`` begins a run here and now, ``claim`` takes the next queued one; both
hand back an ``ActiveRun`` whose heartbeat thread renews the lease and notices a cancel
request, and which is closed with a final status whatever happens in between: the body
returns a status, raises (failed), or is interrupted (cancelled). Its owner is this
process, named so that a peer can tell a dead one from a live one: ``host:pid:start``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cache
from typing import Any

from gristmill.errors import GristmillError
from gristmill.storage.catalog.records import RunRecord
from gristmill.storage.catalog.runs import (
    CANCELLED,
    FAILED,
    FINAL,
    ONE_AT_A_TIME,
    Limits,
    RunRequest,
    RunStore,
)

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
"""How long a run stays its owner's without a heartbeat (renewed every third of it)."""


@cache
def _host() -> str:
    return socket.gethostname()


def _process(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks since boot), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), fields[19].decode()  # fields 3 and 22 of proc(5)
    except (OSError, IndexError):
        return None


def this_owner() -> str:
    pid = os.getpid()
    found = _process(pid)
    return f"{_host()}:{pid}:{found[1] if found else ''}"


def parse_owner(owner: str) -> tuple[str, int | None, str]:
    """``host:pid:start`` as (host, pid, start); pid None when it is not a number."""
    host, pid_text, started = (["", "", ""] + owner.rsplit(":", 2))[-3:]
    return host, int(pid_text) if pid_text.isdigit() else None, started


def owner_alive(owner: str) -> bool:
    """Whether the process that owns a run may still be running it.

    A process of another host is trusted until its lease runs out; one of this host is
    gone when no process has its pid, when it is a zombie, or when the process with that
    pid started at another time (the pid was reused).
    """
    host, pid, started = parse_owner(owner)
    if host != _host() or pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, PermissionError):
        return True
    found = _process(pid)
    if found is None:  # no /proc here: the pid answering is all we know
        return True
    state, start = found
    return state not in ("Z", "X") and (not started or start == started)


class ActiveRun:
    """A run this process owns: its record, its heartbeat and the way it ends."""

    def __init__(
        self,
        store: RunStore,
        record: RunRecord,
        owner: str,
        lease: timedelta,
        closed_abandoned: int = 0,
    ) -> None:
        self.store = store
        self.record = record
        self.closed_abandoned = closed_abandoned
        """Runs of dead owners that were closed as crashed when this one started."""
        self.owner = owner
        self.lease = lease
        self.cancel_requested = False
        self.lost = False
        """The lease ran out and a peer closed the run: stop, and write nothing more."""
        self.finished: str | None = None
        self._checked = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{record.run_id[:8]}", daemon=True
        )

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def should_stop(self) -> bool:
        """Checked between steps: a cancel request or a lost lease ends the run there (the
        catalog is asked at most once a second; the heartbeat also brings the news)."""
        now = time.monotonic()
        if not (self.cancel_requested or self.lost) and now - self._checked >= 1.0:
            self._checked = now
            self.refresh()
        return self.cancel_requested or self.lost

    def finish(
        self, status: str, summary: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        if self.finished is not None:
            return
        self.finished = status
        self._stop.set()
        if not self.store.finish(self.run_id, self.owner, status, summary, error):
            logger.warning(
                "run %s was closed by a peer before it finished here (its lease ran out)",
                self.run_id[:12],
            )

    def _beat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                current = self.store.heartbeat(self.run_id, self.owner, self.lease)
            except GristmillError as exc:  # the catalog is away for a moment: try again
                logger.warning("heartbeat of run %s failed: %s", self.run_id[:12], exc)
                continue
            if current is None:
                self.lost = True
                return
            if current.cancel_requested_at is not None:
                self.cancel_requested = True

    def refresh(self) -> None:
        """Read the cancel request now (between steps) instead of at the next heartbeat."""
        current = self.store.get(self.run_id)
        if current.cancel_requested_at is not None:
            self.cancel_requested = True
        if current.status != "running" or current.owner != self.owner:
            self.lost = True


class Coordinator:
    """Starts, queues, claims and cancels runs of one catalog for this process."""

    def __init__(
        self,
        store: RunStore,
        *,
        lease: timedelta = LEASE,
        alive: Callable[[str], bool] = owner_alive,
        limits: Limits = ONE_AT_A_TIME,
        annotate: Callable[[RunRequest], RunRequest] = lambda request: request,
    ) -> None:
        """``limits``: how many runs may run at once (per tag too); ``annotate`` adds what
        a request may write (``params["targets"]``) before it is stored."""
        self.store = store
        self.lease = lease
        self.alive = alive
        self.owner = this_owner()
        self.limits = limits
        self.annotate = annotate

    def enqueue(self, request: RunRequest) -> RunRecord:
        return self.store.enqueue(uuid.uuid4().hex, self.annotate(request))

    @contextmanager
    def start(self, request: RunRequest) -> Iterator[ActiveRun]:
        """Run here and now (``RunInProgressError`` when the limits or a run writing the
        same tables do not let it start)."""
        record, closed = self.store.start(
            uuid.uuid4().hex,
            self.annotate(request),
            self.owner,
            self.lease,
            self.alive,
            self.limits,
        )
        with self._lifecycle(record, closed) as active:
            yield active

    @contextmanager
    def claim(self, only: str | None = None) -> Iterator[ActiveRun | None]:
        """The next queued run (``only``: that one), owned here for the block; None when
        there is nothing to do."""
        claimed = self.store.claim(self.owner, self.lease, self.alive, only, self.limits)
        if claimed is None:
            yield None
            return
        with self._lifecycle(*claimed) as active:
            yield active

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run; one whose owner is gone is closed as crashed first (nobody is left
        to stop it), so the cancel says it already ended."""
        self.close_abandoned()
        return self.store.cancel(run_id)

    def close_abandoned(self) -> int:
        return self.store.close_abandoned(self.alive)

    @contextmanager
    def _lifecycle(self, record: RunRecord, closed: int) -> Iterator[ActiveRun]:
        active = ActiveRun(self.store, record, self.owner, self.lease, closed)
        active._thread.start()
        try:
            yield active
        except (KeyboardInterrupt, SystemExit) as exc:
            active.finish(CANCELLED, error=f"interrupted ({type(exc).__name__})")
            raise
        except GristmillError as exc:
            active.finish(FAILED, error=str(exc))
            raise
        except BaseException as exc:
            active.finish(FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if active.finished is None:  # the body forgot: never leave a run 'running'
                active.finish(FAILED, error="the run ended without a status")
            active._stop.set()


__all__ = ["FINAL", "LEASE", "ActiveRun", "Coordinator", "owner_alive", "this_owner"]
