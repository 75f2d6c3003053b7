"""Gateways given by name resolved before any call needs them, and kept resolved.

At start and every `INTERVAL` after, the edge resolves the name of every
enabled gateway of its routing table (RFC 3263, into the cache the proxy core
reads). A name is thus in the cache before the first call to it — after a
restart, or soon after an operator added the gateway — and, being read here,
counts as in use: the driver refreshes it ahead of its expiry. Each pass
reads the cache and asks DNS only for what it lacks or what has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from shared.dns.locate import NameSpec, name_spec
from shared.dns.resolver import DnsResolver
from shared.routing_table.cache import RoutingCache
from shared.sip.errors import SipError
from shared.sip.uri import SipUri, parse_uri

INTERVAL = 5.0
"""Seconds between two passes: how soon a new gateway's name is in the cache."""


class NameWarmer:
    def __init__(self, addresses: Callable[[], list[str]], resolver: DnsResolver) -> None:
        self._addresses = addresses
        self._resolver = resolver
        self._task: asyncio.Task[None] | None = None
        self._specs: dict[str, NameSpec | None] = {}
        self.passes = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def warm(self) -> None:
        """One pass: every enabled gateway's name resolved (from the cache where it can)."""
        specs = {spec for spec in map(self._spec, self._addresses()) if spec is not None}
        await asyncio.gather(*(self._resolver.resolve(spec) for spec in specs))
        self.passes += 1

    async def _run(self) -> None:
        while True:
            await self.warm()
            await asyncio.sleep(INTERVAL)

    def _spec(self, address: str) -> NameSpec | None:
        if address not in self._specs:
            if len(self._specs) > 100_000:
                self._specs.clear()
            try:
                uri = parse_uri(address)
                spec = name_spec(uri) if isinstance(uri, SipUri) else None
            except SipError:
                spec = None
            self._specs[address] = spec
        return self._specs[address]


def gateway_addresses(table: RoutingCache) -> Callable[[], list[str]]:
    """The addresses of the table's enabled gateways, read anew each time."""

    def addresses() -> list[str]:
        gateways = table.index.gateways  # the index of now: a reload swaps it whole
        return [gateway.address for gateway in list(gateways.values()) if gateway.enabled]

    return addresses
