"""What every online store offers: keyed rows per feature view, and a sync record.

A row is the feature view's latest row for one entity, as a JSON array of its values
(features and the row's timestamp) in the order of ``SyncState.columns``: a third of the
bytes of a JSON object, and writing bytes is most of the time of filling a store. The
store also remembers which table version it last synced, so a run only writes the
entities that changed since then, and notices a store that was emptied (a Redis restart)
and fills it again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from gristmill.errors import UnknownNameError


@dataclass(frozen=True)
class SyncState:
    view: str
    version: int
    rows: int
    columns: tuple[str, ...] = ()
    """Names of the values in each stored row, in order."""


class OnlineStore(ABC):
    scheme: str

    @abstractmethod
    def state(self, view: str) -> SyncState | None:
        """What was last synced for ``view``, or None if never (or the store was emptied)."""

    @abstractmethod
    def write(
        self,
        view: str,
        rows: Iterable[tuple[Sequence[str], Sequence[str]]],
        deleted: Sequence[str],
        state: SyncState,
        *,
        replace: bool,
    ) -> None:
        """Upsert ``(keys, json values)`` chunks, delete ``deleted`` keys, record ``state``.

        ``replace`` drops every row of the view first (a full sync).
        """

    @abstractmethod
    def get(self, view: str, keys: Sequence[str]) -> list[str | None]:
        """The JSON rows of ``keys`` (None where an entity has no row)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


_STORES: dict[str, Callable[[str, Path, str], OnlineStore]] = {}


def register(scheme: str) -> Callable[[type[OnlineStore]], type[OnlineStore]]:
    def decorate(cls: type[OnlineStore]) -> type[OnlineStore]:
        _STORES[scheme] = cls
        return cls

    return decorate


def open_online_store(url: str, root: Path, project: str) -> OnlineStore:
    """An online store by URL: ``sqlite:///path`` (default) or ``redis://host:port/db``."""
    from gristmill.storage.online import redis as _redis  # noqa: F401 - registers itself
    from gristmill.storage.online import sqlite as _sqlite  # noqa: F401 - registers itself

    scheme = urlparse(url).scheme
    try:
        factory = _STORES[scheme]
    except KeyError:
        raise UnknownNameError("online store", scheme or url, list(_STORES)) from None
    return factory(url, root, project)


def entity_key(values: Sequence[object]) -> str:
    """One string per entity: the value itself, or the values joined for composite keys."""
    return str(values[0]) if len(values) == 1 else "\x1f".join(str(v) for v in values)
