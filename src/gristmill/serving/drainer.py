"""The drainer process: spool files -> the prediction log's Delta tables.

``DrainerProcess`` (in the server's main process) starts ``main(SPOOL, LAKE, EVERY_S)``
in a new Python, restarts it if it dies, and on shutdown closes its stdin and waits for
the last pass (starting a new one for it if the drainer died). The drainer ignores
SIGINT and SIGTERM (a Ctrl-C or a systemd stop reaches the whole process group): it
stops when its stdin ends, which also happens when the server is killed, and then waits
until no spool file has a live writer (workers finishing their last requests) before
its final pass.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger("gristmill.serving")

LAUNCH = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "import sys; from gristmill.serving.drainer import main; main(*sys.argv[1:4])"
)
"""Ignore the group's signals before the heavy imports (they take about a second)."""
LINGER_S = 60.0
"""How long a stopping drainer waits for live writers (uvicorn's graceful timeout is 30 s)."""


class DrainerProcess:
    """The server's drainer child, kept alive by a watchdog thread."""

    def __init__(self, spool: Path, lake_root: Path | str, *, every_s: float = 1.0) -> None:
        self.command = [sys.executable, "-c", LAUNCH, str(spool), str(lake_root), str(every_s)]
        self.restarts = 0
        self._stop = threading.Event()
        self._proc = self._start()
        self._watch = threading.Thread(target=self._watchdog, name="drainer-watch", daemon=True)
        self._watch.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, stdin=subprocess.PIPE)

    def _watchdog(self) -> None:
        while not self._stop.wait(0.5):
            if self._proc.poll() is not None and not self._stop.is_set():
                logger.warning(
                    "prediction log drainer (pid %d) exited with %s; restarting it (spooled "
                    "rows are kept and drained once)",
                    self._proc.pid,
                    self._proc.returncode,
                )
                self.restarts += 1
                self._proc = self._start()

    def stop(self, timeout: float = LINGER_S + 30) -> None:
        """Let the drainer make its last pass and wait for it (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._watch.join()
        if self._finish(self._proc, timeout) != 0:
            # it died (a signal that came while it started, a crash): a new one, started
            # after the signal, makes the last pass; the spool says what is left to do
            logger.warning("the prediction log drainer ended early; running its last pass")
            self._finish(self._start(), timeout)

    @staticmethod
    def _finish(proc: subprocess.Popen[bytes], timeout: float) -> int:
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass  # it is gone already: its return code says how
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the prediction log drainer did not finish in %ss; stopped", timeout)
            proc.kill()
            return proc.wait()


def main(spool: str, lake_root: str, every_s: str) -> None:
    from gristmill.serving.spool import Drainer
    from gristmill.storage.lake import Lake

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # answering comes first: the rows are safe in the spool, so draining can wait for CPU
    os.nice(10)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    drainer = Drainer(Path(spool), Lake(lake_root))
    ended = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        ended.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    while not ended.wait(float(every_s)):
        drainer.drain()
    deadline = time.monotonic() + LINGER_S
    while drainer.live_writers() and time.monotonic() < deadline:
        drainer.drain()
        time.sleep(0.1)
    while not drainer.acquire() and time.monotonic() < deadline:
        time.sleep(0.1)
    drainer.drain()
    drainer.release()
    if drainer.last_error:
        print(
            f"prediction log: {drainer.failures} failed pass(es): {drainer.last_error}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main(*sys.argv[1:4])
