"""The key every edge signs its Record-Route with and checks it by (`services.edge.proxy.dialogs`).

`CALLMESH_RECORD_ROUTE_KEYS` when set: the format and rotation of the
topology keys (`id:base64key[,id:base64key]`, current first, the previous
one still accepted).  Unset: one key generated once for the deployment and
kept in the store (Redis, or the all-in-one's embedded store) under
``{ns}:edge:record-route-key``, created with `SET NX` by whichever edge
starts first; so a fresh deployment needs no configuration, and every edge,
before and after a restart, signs and verifies with the same key.  That key
has id 0: to move to configured keys without refusing the in-dialog requests
of calls in progress, configure ``1:<new key>,0:<the stored value>`` first.
"""

from __future__ import annotations

from services.edge.topology.tokens import Keyring, new_secret
from shared.settings import Settings
from shared.store import Store

STORED_KEY_ID = 0


def record_route_key_name(store: Store) -> str:
    return store.key("edge", "record-route-key")


async def record_route_keyring(settings: Settings, store: Store) -> Keyring:
    """The configured keyring (checked when the settings were read), else the stored key."""
    configured = settings.record_route_keys
    if configured is not None:
        return Keyring.parse(configured.get_secret_value())
    name = record_route_key_name(store)
    await store.redis.set(name, new_secret(), nx=True)
    stored = await store.redis.get(name)
    if stored is None:
        raise RuntimeError("the record-route key vanished from the store")
    secret = stored.decode() if isinstance(stored, bytes) else str(stored)
    return Keyring.parse(f"{STORED_KEY_ID}:{secret}")
