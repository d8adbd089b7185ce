"""Events POSTed to a webhook in the background, with a timeout and retries: decisions of
a service, a monitor's alerts, a scheduled run's failure.

``send`` only queues the event; a sender thread POSTs it as JSON, retrying a failed
delivery with backoff, so a slow or down receiver never delays a response. Deliveries
that still fail are counted (``failed``) with the last error, not raised.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import orjson

from gristmill.definitions.urls import redact

logger = logging.getLogger("gristmill.serving")


class Webhook:
    def __init__(
        self, url: str, *, timeout_s: float = 2.0, retries: int = 3, backoff_s: float = 0.2
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.sent = 0
        self.failed = 0
        self.last_error = ""
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            self._deliver(orjson.dumps(event, default=str))

    def _deliver(self, body: bytes) -> None:
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if response.status < 300:
                        self.sent += 1
                        return
                    self.last_error = f"HTTP {response.status}"
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                self.last_error = str(exc)
            time.sleep(self.backoff_s * (2**attempt))
        self.failed += 1
        logger.warning(
            "webhook %s: an event was not delivered after %d attempts (%s); "
            "%d undelivered so far — check the receiver",
            redact(self.url),
            self.retries + 1,
            self.last_error,
            self.failed,
        )

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
