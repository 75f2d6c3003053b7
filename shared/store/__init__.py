"""The store: Redis (the record) behind one small access layer.

Services use ``store.redis`` (a ``redis.asyncio.Redis``) for commands and
``store.key(...)`` for every key name, so that ``CALLMESH_NAMESPACE`` prefixes
everything. Without ``CALLMESH_REDIS_URL`` the all-in-one process gets an
embedded, Redis-compatible store (:mod:`shared.store.embedded`).
"""

from shared.store.base import Store, open_store

__all__ = ["Store", "open_store"]
