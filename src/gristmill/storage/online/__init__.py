"""The online store: each online feature view's latest row per entity, for serving."""

from gristmill.storage.online.base import OnlineStore, SyncState, open_online_store

__all__ = ["OnlineStore", "SyncState", "open_online_store"]
