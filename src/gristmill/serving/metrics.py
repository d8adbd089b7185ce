"""Prometheus metrics of the serving app, with bounded labels, across every worker.

Labels only take values the server chose: the route's template (``/v1/services/{name}/
predict``, or ``unmatched``), a served service's name (anything else: ``_other``) and the
status. A client cannot grow the exposition by inventing paths.

With several workers each process writes its values to memory-mapped files in one folder
(prometheus_client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` is set before the
workers start) and a scrape of any worker sums them all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gristmill.errors import ServiceConfigError

OTHER = "_other"
UNMATCHED = "unmatched"
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, services: Iterable[str], *, shared: Path | None = None) -> None:
        """``shared``: the multiprocess folder, when several workers serve together."""
        self.known = frozenset(services)
        self.shared = shared
        if shared is not None and not _multiprocess_values():
            raise ServiceConfigError(
                f"metrics of several workers need {MULTIPROCESS_ENV} set before "
                "prometheus_client is imported",
                hint="start the server with `gristmill serve --workers N`",
            )
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "gristmill_request_seconds",
            "Time to answer a request, by route, service and status.",
            ["route", "service", "status"],
            registry=self.registry,
            buckets=BUCKETS,
        )
        self.decisions = Counter(
            "gristmill_decisions",
            "Decisions made, by service and action.",
            ["service", "decision"],
            registry=self.registry,
        )
        self._latency: dict[tuple[str, str, int], Any] = {}
        self._decisions: dict[tuple[str, str], Any] = {}

    def service(self, name: str | None) -> str:
        if not name:
            return ""
        return name if name in self.known else OTHER

    def observe(self, route: str, service: str, status: int, seconds: float) -> None:
        key = (route, service, status)
        child = self._latency.get(key)
        if child is None:
            child = self._latency[key] = self.latency.labels(route, service, str(status))
        child.observe(seconds)

    def decided(self, service: str, decision: str) -> None:
        key = (service, decision)
        child = self._decisions.get(key)
        if child is None:
            child = self._decisions[key] = self.decisions.labels(service, decision)
        child.inc()

    def render(self) -> bytes:
        if self.shared is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        # prometheus_client leaves MultiProcessCollector.__init__ unannotated.
        MultiProcessCollector(registry, path=str(self.shared))  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _multiprocess_values() -> bool:
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False)) and bool(
        os.environ.get(MULTIPROCESS_ENV)
    )
