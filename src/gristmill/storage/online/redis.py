"""The online store on Redis: a string key per entity, a hash for the sync record.

Keys are ``gm:<project>:<view>:<entity>``. The sync record lives in Redis too, so a
restarted (emptied) Redis reports "never synced" and the next run fills it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from gristmill.errors import MissingExtraError, OnlineStoreError
from gristmill.storage.online.base import OnlineStore, SyncState, register

CHUNK = 10_000


@register("redis")
class RedisOnlineStore(OnlineStore):
    scheme = "redis"

    def __init__(self, url: str, root: Path, project: str) -> None:
        try:
            import redis
        except ModuleNotFoundError:
            raise MissingExtraError("redis", "redis") from None
        self._redis = redis
        self.client: Any = redis.Redis.from_url(url)
        self.prefix = f"gm:{project}:"
        self.url = url

    def _key(self, view: str, key: str) -> str:
        return f"{self.prefix}{view}:{key}"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._redis.RedisError as exc:
            raise OnlineStoreError(
                f"the Redis online store at {self.url} failed: {exc}",
                hint="check that Redis runs and `online_store` in gristmill.toml",
            ) from None

    def state(self, view: str) -> SyncState | None:
        with self._errors():
            raw = self.client.hget(f"{self.prefix}__meta__", view)
        if raw is None:
            return None
        data = orjson.loads(raw)
        return SyncState(view, int(data["version"]), int(data["rows"]), tuple(data["columns"]))

    def write(
        self,
        view: str,
        rows: Iterable[tuple[Sequence[str], Sequence[str]]],
        deleted: Sequence[str],
        state: SyncState,
        *,
        replace: bool,
    ) -> None:
        with self._errors():
            self._write(view, rows, deleted, state, replace=replace)

    def _write(
        self, view: str, rows: Any, deleted: Sequence[str], state: SyncState, *, replace: bool
    ) -> None:
        meta = f"{self.prefix}__meta__"
        self.client.hdel(meta, view)  # a crash mid-write must not look synced
        if replace:
            batch = []
            for key in self.client.scan_iter(match=self._key(view, "*"), count=CHUNK):
                batch.append(key)
                if len(batch) >= CHUNK:
                    self.client.unlink(*batch)
                    batch = []
            if batch:
                self.client.unlink(*batch)
        for keys, values in rows:
            for start in range(0, len(keys), CHUNK):
                chunk = {
                    self._key(view, k): v
                    for k, v in zip(
                        keys[start : start + CHUNK], values[start : start + CHUNK], strict=True
                    )
                }
                self.client.mset(chunk)
        for start in range(0, len(deleted), CHUNK):
            self.client.unlink(*(self._key(view, k) for k in deleted[start : start + CHUNK]))
        self.client.hset(
            meta,
            view,
            orjson.dumps({"version": state.version, "rows": state.rows, "columns": state.columns}),
        )

    def get(self, view: str, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        with self._errors():
            values = self.client.mget([self._key(view, k) for k in keys])
        return [v.decode() if v is not None else None for v in values]

    def close(self) -> None:
        self.client.close()
