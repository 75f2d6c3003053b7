"""Which media relay policy applies toward a gateway: one place for the edges and the dry run.

Precedence, most specific first, as an OpenSIPS user sets rtpengine per
gateway in a branch route over the script's general rule: the gateway's own
``media_relay``, else its rule's, else the subscriber domain's
(``CALLMESH_MEDIA_RELAY_DOMAINS``: the callee's for a call to a subscriber,
the caller's otherwise), else the process default (``CALLMESH_MEDIA_RELAY``).
"""

from __future__ import annotations

from typing import Literal, cast, get_args

from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import MediaRelay

Level = Literal["gateway", "rule", "domain", "default"]


def media_relay_for(
    index: RoutingIndex,
    rule_id: str | None,
    gateway_id: str | None,
    default: MediaRelay,
    domain: MediaRelay | None = None,
) -> tuple[MediaRelay, Level]:
    """The policy toward `gateway_id` routed by `rule_id` (`domain`: the subscriber domain's,
    if it sets one), and the level that set it."""
    if gateway_id is not None:
        gateway = index.gateways.get(gateway_id)
        if gateway is not None and gateway.media_relay is not None:
            return gateway.media_relay, "gateway"
    if rule_id is not None:
        setting = index.rule_media.get(rule_id)
        if setting is not None:
            return setting, "rule"
    if domain is not None:
        return domain, "domain"
    return default, "default"


def parse_domain_policies(text: str) -> dict[str, MediaRelay]:
    """``CALLMESH_MEDIA_RELAY_DOMAINS``: ``domain=policy`` comma-separated, e.g.
    ``retail.example=always,pbx.example=never``; domains compared lower-case."""
    policies: dict[str, MediaRelay] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        domain, sep, policy = item.partition("=")
        domain, policy = domain.strip().lower(), policy.strip()
        if not sep or not domain or policy not in get_args(MediaRelay):
            raise ValueError(f"not domain=always|nat|never: {item[:64]!r}")
        if domain in policies:
            raise ValueError(f"domain {domain[:64]!r} given twice")
        policies[domain] = cast(MediaRelay, policy)
    return policies


def table_media_relay(
    index: RoutingIndex, rule_id: str | None, gateway_id: str | None
) -> MediaRelay | None:
    """The table's policy toward `gateway_id` routed by `rule_id`; None where it sets none."""
    policy, level = media_relay_for(index, rule_id, gateway_id, "nat")
    return None if level == "default" else policy
