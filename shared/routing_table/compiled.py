"""The records the routing index keeps: small, slotted, shared wherever they can be.

A million rules name a handful of gateways, carriers and distinct target lists,
so each of those is one object every rule naming it shares, and a rule is one
small slotted :class:`CompiledRule`. The index (`shared.routing_table.index`)
builds and looks them up; the routing cache reads them.
"""

from __future__ import annotations

import random
import sys

from shared.routing_table.model import Carrier, Gateway
from shared.routing_table.timewindow import TimeWindow


class GatewayTarget:
    __slots__ = (
        "address", "attributes", "channels", "description", "enabled", "id", "limits",
        "media_relay", "mode", "prefix", "strip", "tls", "topology",
    )  # the slot names on few lines, not one per line  # fmt: skip

    def __init__(self, gateway_id: str, gateway: Gateway) -> None:
        self.id = gateway_id
        self.address = gateway.address
        self.strip = gateway.strip
        self.prefix = gateway.prefix
        self.attributes = gateway.attributes
        self.description = gateway.description
        self.enabled = gateway.enabled
        self.topology = gateway.topology_hiding
        self.media_relay = gateway.media_relay
        self.mode = gateway.mode
        self.tls = gateway.tls
        limits = gateway.limits
        self.limits = limits
        """Its channel cap and calls per second (over the cluster), None: neither."""
        self.channels = None if limits is None else limits.max_concurrent
        """The gateway's channel cap (calls up at once, over the cluster), None: no cap."""

    def dial(self, number: str) -> str:
        """The number as this gateway wants it: ``strip`` digits off, then ``prefix`` on.

        A leading ``+`` is not a digit: stripping removes it along with the digits.
        """
        if self.strip:
            digits = number[1:] if number[:1] == "+" else number
            number = digits[self.strip :]
        return self.prefix + number if self.prefix else number


class CarrierTargets:
    __slots__ = ("channels", "enabled", "id", "members", "use_first", "weighted", "weights")

    def __init__(self, carrier_id: str, carrier: Carrier) -> None:
        self.id = carrier_id
        self.members = tuple(sys.intern(member.id) for member in carrier.gateways)
        self.weights = tuple(member.weight for member in carrier.gateways)
        self.weighted = carrier.weighted
        self.use_first = carrier.use_first
        self.enabled = carrier.enabled
        limits = carrier.limits
        self.channels = None if limits is None else limits.max_concurrent
        """The carrier's channel cap over all its gateways together, None: no cap."""

    def order(self, rng: random.Random) -> tuple[str, ...]:
        """Member gateway ids in the order to try them for one call.

        Weighted: each position is drawn in proportion to the weights of the members
        not yet drawn (sorting by ``u ** (1 / w)`` gives exactly that distribution).
        """
        if not self.weighted:
            return self.members
        keyed = sorted(
            zip(self.members, self.weights, strict=True),
            key=lambda item: rng.random() ** (1.0 / item[1]) if item[1] else -1.0,
            reverse=True,
        )
        return tuple(member for member, _ in keyed)


class TargetList:
    """One distinct target list, shared by every rule that names it, resolution memoised.

    Why shared: a million rules name a handful of distinct target lists, so the
    gateways resolved for one serve them all, and a lookup reads them from an
    object that stays in cache instead of from its cold rule.
    """

    __slots__ = ("epoch", "gateways", "ids", "number", "sets")

    def __init__(self, ids: tuple[str, ...], number: int) -> None:
        self.ids = ids
        self.number = number
        """Its position in the index's list of target lists (from 1): a rule's tag."""
        self.sets = tuple(target[1:] for target in ids if target[:1] == "@")
        """Dispatcher set ids (``@farm`` → ``farm``), tried before the gateways."""
        self.gateways: tuple[GatewayTarget, ...] = ()
        self.epoch = -1
        """The index epoch ``gateways`` was resolved in; stale once gateways change."""


class CompiledRule:
    """A rule as the index keeps it: one small slotted object, strings and targets shared."""

    __slots__ = ("groups", "id", "prefix", "priority", "targets", "window")

    def __init__(
        self,
        rule_id: str,
        *,
        groups: tuple[str, ...],
        prefix: str,
        priority: int,
        window: TimeWindow | None,
        targets: TargetList,
    ) -> None:
        self.id = rule_id
        self.groups = groups
        self.prefix = prefix
        self.priority = priority
        self.window = window
        self.targets = targets


RuleEntry = CompiledRule | tuple[CompiledRule, ...]


def first_rule(entry: RuleEntry) -> CompiledRule:
    """The rule of highest precedence among a prefix's rules."""
    return entry if type(entry) is CompiledRule else entry[0]  # type: ignore[index]


def rules_of(entry: RuleEntry) -> tuple[CompiledRule, ...]:
    return (entry,) if isinstance(entry, CompiledRule) else entry
