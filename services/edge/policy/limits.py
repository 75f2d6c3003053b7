"""The limits a new call is held to, shared by every worker of every edge, and its leases.

Which limits: the table's (:mod:`shared.limits.table`: its peer's, its rule's, the
channel caps of the gateways it would try first and of their carriers), its
subscriber's (``CALLMESH_CALL_LIMIT_PER_SUBSCRIBER`` / ``_PER_SUBSCRIBER_CPS``) and, for
a stranger, its source IP's (``CALLMESH_CALL_LIMIT_PER_SOURCE`` / ``_PER_SOURCE_CPS``). The core
asks once per new INVITE (a `LimitQuery`, one Redis script: :mod:`shared.limits.store`)
and applies the verdict here: a refusal is 503 with ``Retry-After`` for CPS, 486 (or the
configured 403) for concurrency, each with a ``Reason`` naming the limit; the
gateways at their cap are skipped like busy ones.

An admitted call's leases are recorded here by Call-ID until its end (a BYE
that passed the dialog check, a final failure, a CANCEL's 487) frees them
through ``on_free`` (the runtime's Redis call); the runtime renews those still
held (``held``) so that only a crashed edge's leases lapse. A call older than
``max_call_duration`` is freed on the next renewal round.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final

from services.edge import metrics
from services.edge.policy.call_limit_settings import CallLimitSettings
from services.edge.policy.routing import TableView
from services.edge.proxy.routes import Hop
from shared.limits.model import Demand, LimitQuery, LimitVerdict
from shared.limits.table import channels, held_to, stranger, table_demands
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri

log = logging.getLogger("callmesh.edge.limits")

Freed = Callable[[str, tuple[str, ...], bool], None]
"""(Call-ID, entities, whole): free the call's leases in the shared store (no entities:
whatever the store recorded for that Call-ID, the call of another edge); ``whole`` False:
only those entities, the call goes on (it failed over from that gateway)."""

_CHANNEL_KINDS: Final = frozenset({"gateway", "carrier"})
ALLOWANCE_LIFE: Final = 1.0
"""Seconds a worker may spend the CPS tokens it took ahead (``cps_allowance``); unspent
ones are dropped then, so a worker that stops getting calls does not hoard them."""
GATEWAYS_BUSY: Final = 'SIP;cause=503;text="gateways at their channel caps"'


class CallLeases:
    """Builds each new call's query, applies its verdict, and tracks the leases it holds."""

    __slots__ = ("_allowance", "_held", "on_free", "settings", "table")

    def __init__(self, settings: CallLimitSettings, table: TableView) -> None:
        self.settings = settings
        self.table = table
        self.on_free: Freed | None = None
        self._held: dict[str, tuple[tuple[str, ...], float]] = {}
        """Call-ID → (entities leased, when admitted)."""
        self._allowance: dict[str, tuple[int, float]] = {}
        """entity → (CPS tokens this worker may still spend without asking, until when)."""

    def query(
        self, request: Request, source: Destination, peer: str | None, hops: list[Hop], now: float
    ) -> LimitQuery | None:
        if request.method != "INVITE" or request.to_tag is not None:
            return None
        index = self.table.index
        rule = next((hop.rule_id for hop in hops if hop.rule_id is not None), None)
        demands = table_demands(index, peer, rule)
        settings = self.settings
        if settings.per_subscriber or settings.per_subscriber_cps:
            entity = f"subscriber:{_subscriber(request)}"
            demands.append(held_to(entity, settings.per_subscriber, settings.per_subscriber_cps))
        if peer is None and (settings.per_source or settings.per_source_cps):
            demands.append(stranger(source.host, settings.per_source, settings.per_source_cps))
        if self._allowance:
            demands = [left for d in demands if (left := self._spend(d, now)) is not None]
        gateways = channels(index, (hop.gateway_id for hop in hops))
        if not demands and not gateways:
            return None
        return LimitQuery(request.call_id, tuple(demands), gateways)

    def apply(
        self, query: LimitQuery, verdict: LimitVerdict | None, hops: list[Hop], now: float
    ) -> list[Hop]:
        if verdict is None:  # the store did not answer: fail open, as the docs say
            metrics.LIMIT_CHECKS["unknown"] += 1
            return hops
        if not verdict.admitted:
            raise self._refusal(verdict)
        metrics.LIMIT_CHECKS["admitted"] += 1
        for entity, tokens in verdict.spare:
            self._allowance[entity] = (tokens, now + ALLOWANCE_LIFE)
        entities = [demand.entity for demand in query.demands if demand.max_concurrent is not None]
        entities += verdict.channels
        if entities:
            self._held[query.call_id] = (tuple(entities), now)
        if not verdict.skipped:
            return hops
        skipped = {entity.partition(":")[2] for entity in verdict.skipped}
        metrics.LIMIT_CHECKS["gateway_skipped"] += len(skipped)
        kept = [hop for hop in hops if hop.gateway_id not in skipped]
        if not kept:
            raise SipError(
                "Service Unavailable (gateways at their channel caps)",
                503,
                (("Reason", GATEWAYS_BUSY), ("Retry-After", "1")),
            )
        return kept

    def _spend(self, demand: Demand, now: float) -> Demand | None:
        """``demand`` with its CPS part paid from the local allowance if it holds a token
        (None: nothing left to ask the store), else as it was."""
        held = self._allowance.get(demand.entity)
        if held is None or demand.max_cps is None:
            return demand
        tokens, until = held
        if until <= now:
            del self._allowance[demand.entity]
            return demand
        if tokens <= 1:
            del self._allowance[demand.entity]
        else:
            self._allowance[demand.entity] = (tokens - 1, until)
        metrics.LIMIT_CHECKS["local"] += 1
        if demand.max_concurrent is None:
            return None
        return Demand(demand.entity, demand.max_concurrent)

    def _refusal(self, verdict: LimitVerdict) -> SipError:
        entity = verdict.refused or ""
        if verdict.kind == "cps":
            metrics.LIMIT_CHECKS["refused_cps"] += 1
            retry = max(1, math.ceil(verdict.retry_after_ms / 1000))
            reason = f'SIP;cause=503;text="calls per second limit of {entity}"'
            headers = (("Reason", reason), ("Retry-After", str(retry)))
            return SipError("Service Unavailable (calls per second limit)", 503, headers)
        metrics.LIMIT_CHECKS["refused_concurrent"] += 1
        status = self.settings.concurrent_status
        reason = f'SIP;cause={status};text="concurrent call limit of {entity}"'
        phrase = "Busy Here" if status == 486 else "Forbidden"
        return SipError(f"{phrase} (concurrent call limit)", status, (("Reason", reason),))

    def release(self, call_id: str, *, anywhere: bool = False) -> None:
        """The call ended (or failed): free its leases; a call holding none costs a dict probe.

        ``anywhere``: a BYE, which may end a call another edge admitted: when limits are in
        use and this worker holds none for it, the store frees it by Call-ID (``on_free``
        with no entities), one round trip off the BYE's path.
        """
        held = self._held.pop(call_id, None)
        if self.on_free is None:
            return
        if held is not None:
            self.on_free(call_id, held[0], True)
        elif anywhere and self._in_use():
            self.on_free(call_id, (), True)

    def _in_use(self) -> bool:
        settings = self.settings
        return bool(
            self.table.index.limited
            or settings.per_subscriber
            or settings.per_subscriber_cps
            or settings.per_source
            or settings.per_source_cps
        )

    def channel_for(self, call_id: str, hop: Hop) -> LimitQuery | None:
        """A failover to `hop`: its channel caps (its own, its carriers') the call does not
        hold yet, as a query; None when it has none or holds them all."""
        if hop.gateway_id is None:
            return None
        found = channels(self.table.index, (hop.gateway_id,))
        held = self._held.get(call_id)
        if not found or (held is not None and {c.entity for c in found[0].caps} <= {*held[0]}):
            return None
        return LimitQuery(call_id, (), found)

    def channel_taken(self, query: LimitQuery, verdict: LimitVerdict | None, now: float) -> bool:
        """The failover's channel: taken (the channels of the gateway it leaves are freed, the
        call goes on), or at its cap (False: the hop is skipped, like a busy one)."""
        if verdict is None:  # fail open, as for a new call
            metrics.LIMIT_CHECKS["unknown"] += 1
            return True
        if verdict.gateway is None:
            metrics.LIMIT_CHECKS["gateway_skipped"] += 1
            return False
        entities, since = self._held.get(query.call_id, ((), now))
        left = tuple(e for e in entities if e.partition(":")[0] not in _CHANNEL_KINDS)
        dropped = tuple(e for e in entities if e not in left and e not in verdict.channels)
        self._held[query.call_id] = ((*left, *verdict.channels), since)
        if dropped and self.on_free is not None:
            self.on_free(query.call_id, dropped, False)
        return True

    def forget(self, call_ids: list[str]) -> None:
        """Calls whose leases are gone from the store (freed through another edge, lapsed)."""
        for call_id in call_ids:
            self._held.pop(call_id, None)

    def held(self, now: float) -> list[tuple[str, tuple[str, ...]]]:
        """The leases to renew now; calls past ``max_call_duration`` are freed instead."""
        oldest = now - self.settings.max_call_duration
        for call_id in [c for c, (_, since) in self._held.items() if since < oldest]:
            log.info("call %s passed the maximum call duration: its leases are freed", call_id)
            self.release(call_id)
        return [(call_id, entities) for call_id, (entities, _) in self._held.items()]


def _subscriber(request: Request) -> str:
    """The caller as `user@host` of From (authentication will supply the real username)."""
    uri = request.from_.uri
    if isinstance(uri, SipUri):
        return f"{uri.user or ''}@{uri.host}"
    return str(uri)
