"""The runtimes a server answers with, swapped without a restart when an alias moves.

A background thread asks, every ``every_s`` seconds, which versions each service's
aliases (champion, challenger) point at; when one changed, the new version is loaded
(digest-verified) beside the old one and the reference is swapped in one assignment, so
requests in flight finish on the runtime they started with and none is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from gristmill.errors import UnknownServiceError
from gristmill.serving.runtime import ServiceRuntime

logger = logging.getLogger("gristmill.serving")


class Host:
    def __init__(
        self,
        names: Sequence[str],
        build: Callable[[str], ServiceRuntime],
        alias_version: Callable[[str], tuple[int | None, int | None]],
        *,
        every_s: float = 2.0,
    ) -> None:
        self._build = build
        self._alias_version = alias_version
        self.runtimes: dict[str, ServiceRuntime] = {name: build(name) for name in names}
        self.every_s = every_s
        self.reloads = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="alias-watch", daemon=True)

    def start(self) -> None:
        if self.every_s > 0:
            self._thread.start()

    def get(self, name: str) -> ServiceRuntime:
        try:
            return self.runtimes[name]
        except KeyError:
            raise UnknownServiceError(
                f"this server does not serve {name!r}",
                hint=f"served: {', '.join(sorted(self.runtimes))}",
            ) from None

    def refresh(self) -> list[str]:
        """Reload services whose alias moved; return their names."""
        moved = []
        for name, runtime in list(self.runtimes.items()):
            versions = self._alias_version(name)
            if versions[0] is not None and versions != runtime.versions:
                self.runtimes = {**self.runtimes, name: self._build(name)}
                self.reloads += 1
                moved.append(name)
        return moved

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving the loaded version
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:  # logged once, not every every_s
                    logger.warning(
                        "could not reload a moved alias, still serving the loaded versions: "
                        "%s (check the catalog and the artifact store; retrying every %ss)",
                        error,
                        self.every_s,
                    )
                self.last_error = error
            else:
                if self.last_error:
                    logger.warning("reloading aliases works again")
                self.last_error = ""

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
