"""Replay protection for digest answers: each nonce-count of a nonce is good once, anywhere.

REGISTERs (at the registrar) and the 407-authenticated requests of the edges
claim the count of the nonce they carry in the same Redis key
(``layout.nonce_count_key``), so a request replayed to another node, or from
a REGISTER to an INVITE, is caught as well.  A count is claimed only if it
is above every earlier one: counts go up, as RFC 7616 §3.4 has clients do.
"""

from __future__ import annotations

from typing import Final

from shared.registrar.layout import nonce_count_key
from shared.store import Store

GRACE: Final = 10
"""Seconds a count is remembered after its nonce turned stale (clocks differ a little)."""

# KEYS[1]: the nonce's count. ARGV: nc, seconds to keep it. 1 if nc is above every earlier one.
CLAIM_SCRIPT: Final = """
local seen = redis.call('GET', KEYS[1])
if seen and tonumber(seen) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


class NonceCounts:
    def __init__(self, store: Store, nonce_ttl: int) -> None:
        self.store = store
        self.keep = nonce_ttl + GRACE
        self._claim = store.redis.register_script(CLAIM_SCRIPT)

    def key(self, nonce: str) -> str:
        return nonce_count_key(self.store, nonce)

    async def claim(self, nonce: str, count: int) -> bool:
        """Whether ``count`` is the first use of it for ``nonce`` (False: a replay)."""
        return bool(await self._claim(keys=[self.key(nonce)], args=[count, self.keep]))
