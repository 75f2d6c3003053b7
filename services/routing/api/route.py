"""``GET /route``: the dry run — what an edge would do with this number right now.

It answers from the same in-memory cache the edges use, fed by the same events,
so it shows exactly the edges' view (including each gateway's health state),
which peer a call from ``source`` would belong to (its group, dialplan and
tech prefix then apply, as on the edge), the shared call limits that would
apply (the peer's, the rule's, a stranger's source IP's, the channel caps of the
gateways and carriers: :mod:`shared.limits.table`) with their usage now,
what the header manipulation rule sets would do to each branch (on a typical
INVITE), whether topology hiding applies toward each gateway, and the media
relay policy toward each (and which level set it: gateway, rule or the
``CALLMESH_MEDIA_RELAY`` default), and the fraud verdict for the caller's
account (``caller``, or the peer of ``source``). A gateway
given by name shows what RFC 3263 resolves it to now (`dns`: its targets in one
draw of the SRV weights, or why there are none: an edge skips it then), and so
does each destination of the rule's dispatcher sets (``dispatchers``: read from
the health service's store, each destination or DNS target with the state its
probes gave it, as the edges read them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from services.routing.api.fraud import fraud_dry_run
from services.routing.api.limits import usage_item
from shared.dispatcher import destination_target_id
from shared.dns import Located, NameSpec
from shared.dns.locate import name_spec
from shared.dns.resolver import DnsResolver
from shared.fraud.store import FraudStore
from shared.health.store import HealthStore
from shared.limits import table
from shared.limits.store import SharedLimits
from shared.routing_table.cache import RoutingCache
from shared.routing_table.index import RoutingIndex
from shared.routing_table.manipulation import dry_run as manipulation_dry_run
from shared.routing_table.media import media_relay_for
from shared.routing_table.model import ID_PATTERN, MediaRelay
from shared.routing_table.modes import mode_for, set_mode_for
from shared.sip.errors import SipError
from shared.sip.uri import SipUri, parse_uri

Number = Annotated[str, Query(pattern=r"^[+0-9*#]{1,64}$", description="digits, may start with +")]
Group = Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
DialplanId = Annotated[
    str | None, Query(pattern=rf"^{ID_PATTERN}$", description="translate the number first")
]
Source = Annotated[
    str | None,
    Query(
        pattern=r"^(udp|tcp|tls|ws|wss):[0-9A-Fa-f.:]{2,45}:[0-9]{1,5}$",
        description="the caller's transport:ip:port (IPv6 unbracketed): its peer's group and "
        "dialplan apply instead of group and dialplan",
    ),
]


CallerDomain = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9.-]{1,253}$",
        description="the calling subscriber's domain: its media relay policy "
        "(CALLMESH_MEDIA_RELAY_DOMAINS) applies where the gateway and rule set none",
    ),
]


Caller = Annotated[
    str | None,
    Query(
        pattern=r"^[^\s@]{1,128}@[A-Za-z0-9.:\[\]-]{1,253}$",
        description="the calling subscriber, user@host of its From: the fraud verdict for its "
        "account (a call from a peer's source is the peer's account)",
    ),
]


def route_router(
    cache: RoutingCache,
    dns: DnsResolver,
    limits: SharedLimits,
    default: MediaRelay = "nat",
    domains: dict[str, MediaRelay] | None = None,
    *,
    health: HealthStore | None = None,
    fraud: FraudStore | None = None,
    strangers: tuple[int, int] = (0, 0),
    subscribers: tuple[int, int] = (0, 0),
) -> APIRouter:
    """`health`: where the dispatcher sets and their destinations' states are (none: the
    dry run names the rule's sets only); `strangers`: the edges' concurrent and CPS limits
    per source IP of a stranger; `subscribers`: theirs per subscriber (a ``caller``)."""
    router = APIRouter(tags=["routing"])

    @router.get("/route", summary="Dry run: the rule and gateways a number routes to")
    async def dry_run(
        number: Number,
        *,
        group: Group = "0",
        dialplan: DialplanId = None,
        source: Source = None,
        domain: CallerDomain = None,
        caller: Caller = None,
    ) -> Any:
        routed = number
        domain_policy = (domains or {}).get(domain.lower()) if domain is not None else None
        peer = None
        if source is not None:
            transport, rest = source.split(":", 1)
            host, _, port = rest.rpartition(":")
            peer = cache.index.peers.classify(host, int(port), transport, number)
        if peer is not None:
            group, dialplan = peer.group, peer.dialplan
            routed = number[len(peer.tech_prefix) :]
        if dialplan is not None:
            try:
                routed = cache.translate(dialplan, routed)
            except KeyError:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, f"no dialplan {dialplan!r}"
                ) from None
        route = cache.lookup(routed, group)
        if route is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no route for {routed!r} in group {group!r}"
            )
        hops = route.hops
        resolved = await asyncio.gather(
            *(_dns(dns, hop.gateway.address, cache.health.state, hop.gateway.id) for hop in hops)
        )
        index = cache.index
        demands = table.table_demands(index, peer.id if peer else None, route.rule_id)
        if caller is not None and any(subscribers):
            demands.append(table.held_to(f"subscriber:{caller}", *subscribers))
        if peer is None and source is not None and any(strangers):
            demands.append(table.stranger(host, *strangers))
        capped = [
            cap for ch in table.channels(index, (hop.gateway.id for hop in hops)) for cap in ch.caps
        ]
        limited = list(dict.fromkeys(demand.entity for demand in (*demands, *capped)))
        configured = table.configured(index)
        for demand in demands:
            configured.setdefault(demand.entity, (demand.max_concurrent, demand.max_cps))
        account = f"peer:{peer.id}" if peer is not None else None
        if account is None and caller is not None:
            user, _, domain = caller.rpartition("@")
            account = f"subscriber:{user}@{domain.lower()}"
        screened = None
        if fraud is not None and account is not None:
            screened = await fraud_dry_run(cache.index, fraud, account, routed)
        usage = [
            usage_item(each, configured.get(each.entity)) for each in await limits.usage(limited)
        ]
        return {
            "number": number,
            "routed_number": routed,
            "group": group,
            "peer": None
            if peer is None
            else {"id": peer.id, "trusted": peer.trusted, "tech_prefix": peer.tech_prefix or None},
            "version": cache.version,
            "rule": {
                "id": route.rule_id,
                "prefix": route.rule_prefix,
                "priority": route.priority,
                "mode": "b2bua" if route.rule_id in index.b2bua_rules else "proxy",
            },
            "dispatcher_sets": list(route.sets),
            "dispatchers": [] if health is None else await _dispatchers(health, dns, route.sets),
            "limits": usage,
            "fraud": screened,
            "gateways": [
                {
                    "id": hop.gateway.id,
                    "address": hop.gateway.address,
                    "number": hop.number,
                    "state": hop.state,
                    "dns": found,
                    "topology_hiding": _topology(cache.index, route.rule_id, hop.gateway.id),
                    "media_relay": _media(
                        cache.index, route.rule_id, hop.gateway.id, default, domain_policy
                    ),
                    "mode": _mode(index, route.rule_id, hop.gateway.id),
                    "manipulations": _manipulations(
                        cache.index, group, route.rule_id, hop.gateway.id, hop.number
                    ),
                }
                for hop, found in zip(hops, resolved, strict=True)
            ],
        }

    return router


async def _dns(
    dns: DnsResolver, address: str, state: Callable[[str], str], gateway_id: str
) -> dict[str, Any] | None:
    """What a gateway's name resolves to, each target with its health state (an edge skips
    the `down` ones, tries the `probing` ones last); None for one given by IP address."""
    found = await _located(dns, address)
    if found is None:
        return None
    return _dns_view(*found, lambda label: state(f"{gateway_id}@{label}"))


async def _located(dns: DnsResolver, address: str) -> tuple[NameSpec, Located] | None:
    """What RFC 3263 resolves a next hop's URI to now; None for one given by IP address."""
    try:
        uri = parse_uri(address)
    except SipError:
        return None
    spec = name_spec(uri) if isinstance(uri, SipUri) else None
    if spec is None:
        return None
    return spec, await dns.resolve(spec)


def _dns_view(spec: NameSpec, located: Located, state: Callable[[str], str]) -> dict[str, Any]:
    """A name's targets, each with the state `state` gives its label, or why there are none."""
    return {
        "name": spec.host,
        "targets": [
            {
                "target": target.label,
                "address": target.address,
                "port": target.port,
                "transport": target.transport,
                "priority": target.priority,
                "state": state(target.label),
            }
            for target in located.targets
        ],
        "reason": located.reason,
    }


async def _dispatchers(
    health: HealthStore, dns: DnsResolver, set_ids: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The rule's dispatcher sets: each destination with its probes' state, and one given by
    name with its DNS targets, each with its own state (`ds:{set}:{uri}@{label}`): an edge
    skips a `down` or `disabled` one. A set the health service does not have: no destinations."""
    found = []
    for set_id in set_ids:
        dispatcher_set = await health.dispatcher_set(set_id)
        uris = [] if dispatcher_set is None else [d.uri for d in dispatcher_set.destinations]
        resolved = await asyncio.gather(*(_located(dns, uri) for uri in uris))
        ids = []
        for uri, named in zip(uris, resolved, strict=True):
            base = destination_target_id(set_id, uri)
            ids += [base] if named is None else [f"{base}@{t.label}" for t in named[1].targets]
        records = await health.states(ids) if ids else []
        states = {i: r.state for i, r in zip(ids, records, strict=True) if r is not None}
        destinations = []
        for uri, named in zip(uris, resolved, strict=True):
            base = destination_target_id(set_id, uri)
            destinations.append(
                {
                    "uri": uri,
                    "state": states.get(base, "unknown") if named is None else None,
                    "dns": None if named is None else _dns_view(*named, _state_in(states, base)),
                }
            )
        algorithm = None if dispatcher_set is None else dispatcher_set.algorithm
        set_mode = None if dispatcher_set is None else dispatcher_set.mode
        mode, level = set_mode_for(set_mode)
        found.append(
            {
                "id": set_id,
                "algorithm": algorithm,
                "mode": {"mode": mode, "set_by": level},
                "destinations": destinations,
            }
        )
    return found


def _state_in(states: Mapping[str, str], destination_id: str) -> Callable[[str], str]:
    """The state of each DNS target of a destination, by its label, from the stored ones."""
    return lambda label: states.get(f"{destination_id}@{label}", "unknown")


def _topology(index: RoutingIndex, rule_id: str, gateway_id: str) -> dict[str, Any] | None:
    """The options the edge applies toward this gateway (the gateway's own, else the rule's)."""
    gateway = index.gateways.get(gateway_id)
    setting = gateway.topology if gateway is not None else None
    setting = setting or index.rule_topology.get(rule_id)
    options = setting.options if setting is not None else None
    return None if options is None else options.model_dump(mode="json")


def _media(
    index: RoutingIndex,
    rule_id: str,
    gateway_id: str,
    default: MediaRelay,
    domain: MediaRelay | None,
) -> dict[str, str]:
    policy, level = media_relay_for(index, rule_id, gateway_id, default, domain)
    return {"policy": policy, "set_by": level}


def _mode(index: RoutingIndex, rule_id: str, gateway_id: str) -> dict[str, str]:
    """How the edge carries a call to this gateway: as a proxy or a B2BUA, and who said so."""
    mode, level = mode_for(index, rule_id, gateway_id)
    return {"mode": mode, "set_by": level}


def _manipulations(
    index: RoutingIndex, group: str, rule_id: str, gateway_id: str, number: str
) -> dict[str, Any]:
    sets = index.manipulations.for_branch(group, rule_id, gateway_id)
    result = manipulation_dry_run(sets, number)
    return {
        "rule_sets": [rule_set.id for rule_set in sets],
        "number": result.number,
        "changes": [
            {
                "rule_set": change.rule_set,
                "rule": change.rule,
                "action": change.action,
                "target": change.target,
                "before": change.before,
                "after": change.after,
            }
            for change in result.changes
        ],
    }
