"""The routing table's records as operators write them: API bodies, command data, CSV rows.

One pydantic model per kind is the single definition of what is valid; the store,
the command queue, the CSV importer and the edges all validate through it. Field
constraints are declarative (checked in pydantic's core) because an import of a
million rules validates a million of them.

Targets of a rule follow drouting's notation: ``"7"`` is gateway 7, ``"#acme"`` is
carrier ``acme``; and ``"@farm"`` is the health service's dispatcher set ``farm``
(its healthy destinations, in the set's algorithm order, chosen by the edge).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.acl import AclEntry, wider_than_trust
from shared.dispatcher.model import SET_ID_PATTERN, Mode
from shared.fraud.rules import FraudRuleBody
from shared.model import InputModel, OpenInputModel
from shared.routing_table.gateway_tls import GatewayTls, names_tls
from shared.routing_table.manipulation.rules import Attachment, RuleSet
from shared.routing_table.manipulation.rules import Rule as ManipulationRule
from shared.routing_table.timewindow import TimeWindow
from shared.routing_table.topology import TargetTopology

Kind = Literal["gateway", "carrier", "rule", "dialplan", "manipulation", "peer", "fraud_rule"]
KINDS: tuple[Kind, ...] = (
    "gateway",
    "carrier",
    "rule",
    "dialplan",
    "manipulation",
    "peer",
    "fraud_rule",
)

ID_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
EntityId = Annotated[str, StringConstraints(pattern=rf"^{ID_PATTERN}$")]
Target = Annotated[str, StringConstraints(pattern=rf"^(#?{ID_PATTERN}|@{SET_ID_PATTERN})$")]
Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]{0,32}$")]
DialPrefix = Annotated[str, StringConstraints(pattern=r"^[0-9+*#]{0,32}$")]
Groups = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}(,[A-Za-z0-9_-]{1,32}){0,15}$")
]
SipUri = Annotated[str, StringConstraints(pattern=r"^sips?:[^\s@]+(@[^\s@]+)?$", max_length=256)]
Attributes = Annotated[str, StringConstraints(max_length=1024)]
Description = Annotated[str, StringConstraints(max_length=256)]
Priority = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
MediaRelay = Literal["always", "nat", "never"]
"""Whether a call's media goes through rtpengine: always, only when a party is behind NAT,
or never (`docs/media.md`); unset on a gateway or rule: the next level decides."""


def _source(text: str) -> str:
    """An address as ``CALLMESH_TRUSTED_NETWORKS`` writes it, checked by the same parser."""
    AclEntry.parse(text)
    return text


SourceAddress = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, strip_whitespace=True),
    AfterValidator(_source),
]
"""``[transport:]cidr[:port]`` (:mod:`shared.acl`): ``udp:198.51.100.7:5060``, ``10.0.0.0/8``."""
Group = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
TechPrefix = Annotated[str, StringConstraints(pattern=r"^[0-9*#]{1,16}$")]


class Limits(InputModel):
    """Cluster-wide limits of one peer or gateway; absent means unlimited.

    ``max_concurrent``: calls up at once (a gateway's channel cap); ``max_cps``:
    new calls per second, a token bucket of that rate holding ``cps_burst`` tokens
    (default a tenth of a second's worth, at least 1: a second never admits more than
    ``max_cps`` + 10 %, see docs/limits.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrent: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    max_cps: Annotated[int, Field(ge=1, le=100_000)] | None = None
    cps_burst: Annotated[int, Field(ge=1, le=100_000)] | None = None
    cps_allowance: Annotated[int, Field(ge=2, le=1000)] | None = None
    """CPS tokens an edge worker takes from the shared bucket at once and spends locally for
    up to a second: a Redis round trip for one call in this many (docs/limits.md bounds
    the cluster-wide error it costs)."""

    @property
    def burst(self) -> int | None:
        """The CPS bucket's size (None: no CPS limit)."""
        if self.max_cps is None:
            return None
        return self.cps_burst or default_burst(self.max_cps)


def default_burst(max_cps: int) -> int:
    """A tenth of a second's calls, at least one (see :class:`Limits`)."""
    return max(1, -(-max_cps // 10))


class Record(OpenInputModel):
    """Fields beyond the known ones are kept and shown back, as the contract allows
    ("more fields allowed"): operators tag records with their own metadata. The
    known fields are still checked strictly, and numbers anywhere must be finite."""

    model_config = ConfigDict(frozen=True)

    def stored(self) -> str:
        """The compact JSON kept in Redis: defaults omitted, a million rules stay small."""
        return self.model_dump_json(exclude_defaults=True)


class Gateway(Record):
    """A SIP peer calls are sent to; ``strip`` digits are removed, then ``prefix`` added."""

    address: SipUri
    strip: Annotated[int, Field(ge=0, le=32)] = 0
    prefix: DialPrefix = ""
    attributes: Attributes = ""
    description: Description = ""
    enabled: bool = True
    topology_hiding: TargetTopology | None = None
    """Hide the inside's topology from this gateway (overrides the rule's setting)."""
    limits: Limits | None = None
    """``max_concurrent`` is the gateway's channel cap, ``max_cps`` (bucket ``cps_burst``) the
    new calls per second a carrier takes on it: at either, the gateway is skipped like a busy
    one and the next target tried."""
    media_relay: MediaRelay | None = None
    """Relay media through rtpengine toward this gateway (overrides the rule's setting)."""
    tls: GatewayTls | None = None
    """How to connect to it over TLS (client certificate, CAs, verification, server name);
    only for an address reached over TLS."""
    mode: Mode | None = None
    """Carry the calls to this gateway as a proxy or a B2BUA (overrides the rule's mode)."""

    @model_validator(mode="after")
    def _tls_needs_tls(self) -> Gateway:
        if self.tls is not None and not names_tls(self.address):
            raise ValueError("tls options need a sips: address or one with ;transport=tls")
        return self

    @model_validator(mode="after")
    def _counted_exactly(self) -> Gateway:
        """A gateway's calls per second decide where a call goes, so every one is counted in
        the shared bucket: a local allowance (taken ahead by one worker) would skip it wrongly."""
        if self.limits is not None and self.limits.cps_allowance is not None:
            raise ValueError("a gateway's max_cps is counted exactly: no cps_allowance")
        return self


class CarrierMember(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: EntityId
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        """Accept drouting's ``"gw"`` / ``"gw=weight"`` shorthand besides the object form."""
        if isinstance(value, str):
            gateway, sep, weight = value.partition("=")
            return {"id": gateway, "weight": weight} if sep else {"id": gateway}
        return value


class Carrier(Record):
    """A named list of gateways a rule can point at as one target (``"#id"``).

    ``weighted`` orders the gateways randomly in proportion to their weights for
    each call (weight 0: only after all the others); ``use_first`` keeps just the
    first gateway of that order, i.e. no failover inside the carrier.
    """

    gateways: Annotated[tuple[CarrierMember, ...], Field(min_length=1, max_length=64)]
    weighted: bool = False
    use_first: bool = False
    enabled: bool = True
    attributes: Attributes = ""
    description: Description = ""
    limits: Limits | None = None
    """``max_concurrent`` caps the calls up at once on all its gateways together (wherever
    a call to them comes from): a gateway whose carrier is at its cap is skipped."""

    @model_validator(mode="after")
    def _channels_only(self) -> Carrier:
        if self.limits is not None and (self.limits.max_cps or self.limits.cps_burst):
            raise ValueError("a carrier's limits are a channel cap: max_concurrent only")
        return self


class Rule(Record):
    """A prefix route within one or more caller groups (``"0,5"``).

    ``prefix`` is digits only and empty for the default route; numbers are matched
    without their leading ``+``. Higher ``priority`` wins among the rules of one
    prefix whose ``time`` window matches.
    """

    group: Groups = "0"
    prefix: Digits = ""
    priority: Priority = 0
    time: TimeWindow | None = None
    gateways: Annotated[tuple[Target, ...], Field(min_length=1, max_length=32)]
    attributes: Attributes = ""
    description: Description = ""
    topology_hiding: TargetTopology | None = None
    """Hide the inside's topology from every gateway of this rule without a setting of its own."""
    media_relay: MediaRelay | None = None
    """Relay media for every gateway of this rule without a setting of its own."""
    limits: Limits | None = None
    """The limits of the destination prefix this rule routes (``rule:<id>``): calls up at
    once and new calls per second over the cluster, refused past them."""
    mode: Mode = "proxy"
    """``"b2bua"``: the edge carries this rule's calls as a B2BUA, not as a proxy."""

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.group.split(","))

    @model_validator(mode="after")
    def _sets_first(self) -> Rule:
        """Edges try a rule's dispatcher sets before its gateways, so that is the order written.

        Why not any order: a carrier or a dangling gateway id expands to a varying
        number of gateways, so "the set goes after the third target" has no stable
        meaning; sets first (a farm, then a fallback gateway) is the useful case.
        """
        seen_gateway = False
        for target in self.gateways:
            if target[0] != "@":
                seen_gateway = True
            elif seen_gateway:
                raise ValueError(f"dispatcher set {target} must come before the gateways")
        return self


_GROUP_REFERENCE = re.compile(r"\\(\d+)|\\g<(\d+)>")


class DialplanRule(InputModel):
    """One translation: ``exact`` compares the whole number; ``regex`` searches it.

    On a match the number is rewritten by ``subst`` (a regex, default: ``match``
    itself) and ``replace`` (``\\1`` back-references); for ``exact`` the number
    simply becomes ``replace``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    match_op: Literal["exact", "regex"] = "regex"
    match: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    subst: Annotated[str, StringConstraints(max_length=256)] | None = None
    replace: Annotated[str, StringConstraints(max_length=256)] = ""

    @model_validator(mode="after")
    def _compilable(self) -> DialplanRule:
        if self.match_op == "exact":
            if self.subst is not None:
                raise ValueError("subst is only for regex rules")
            return self
        try:
            re.compile(self.match)
            pattern = re.compile(self.subst if self.subst is not None else self.match)
        except re.error as error:
            raise ValueError(f"bad regular expression: {error}") from error
        for number, named in _GROUP_REFERENCE.findall(self.replace):
            if int(number or named) > pattern.groups:
                raise ValueError(
                    f"replace refers to group {number or named}, the regex has {pattern.groups}"
                )
        return self


class Dialplan(Record):
    """Ordered translations applied before routing; the first matching rule wins."""

    rules: Annotated[tuple[DialplanRule, ...], Field(min_length=1, max_length=1024)]
    description: Description = ""


class Manipulation(Record):
    """A header manipulation rule set attached to a source group, rule, gateway or dispatcher
    set (see :mod:`shared.routing_table.manipulation`); its rules are validated on write."""

    scope: Attachment
    description: Description = ""
    rules: Annotated[tuple[ManipulationRule, ...], Field(min_length=1, max_length=64)]

    def stored(self) -> str:
        """Defaults kept: a rule's ``action`` is a default, and the key to read it back."""
        return self.model_dump_json()

    def rule_set(self, record_id: str) -> RuleSet:
        return RuleSet(
            id=record_id, scope=self.scope, description=self.description, rules=self.rules
        )


class Peer(Record):
    """A customer or carrier calling in, known by the addresses it sends from.

    The edge classifies each new call's source by peer before anything else:
    the longest matching address wins, and among peers sharing it (several
    customers behind one SBC) the one whose ``tech_prefix`` starts the dialled
    number (longest first; the prefix is stripped), else the one without a
    prefix. A ``trusted`` peer calls without digest authentication; its calls
    route in ``group`` after ``dialplan``.
    """

    addresses: Annotated[tuple[SourceAddress, ...], Field(min_length=1, max_length=64)]
    trust_wide_networks: bool = False
    """Let a trusted peer's address be wider than `WIDE_TRUST` (its sources call for free)."""
    trusted: bool = False
    group: Group = "0"
    dialplan: EntityId | None = None
    tech_prefix: TechPrefix | None = None
    limits: Limits | None = None
    enabled: bool = True
    attributes: Attributes = ""
    description: Description = ""

    @field_validator("trusted")
    @classmethod
    def _trust_is_narrow(cls, trusted: bool, info: ValidationInfo) -> bool:
        """A trusted `0.0.0.0/0` (or `10.1.2.3/0`, a typo `strict=False` reads as one) let the
        whole Internet call without digest: trusting that wide must be said in so many words."""
        if not trusted or info.data.get("trust_wide_networks"):
            return trusted
        for address in info.data.get("addresses", ()):
            reason = wider_than_trust(AclEntry.parse(address))
            if reason is not None:
                raise ValueError(f"address {reason}; set trust_wide_networks if that is meant")
        return trusted


class FraudRule(FraudRuleBody, Record):
    """A fraud rule (:mod:`shared.fraud.rules`; docs/fraud.md): a record of the table so every
    edge holds it, changed like the others (API, command queue, events)."""

    description: Description = ""


RECORD_TYPES: dict[Kind, type[Record]] = {
    "gateway": Gateway,
    "carrier": Carrier,
    "rule": Rule,
    "dialplan": Dialplan,
    "manipulation": Manipulation,
    "peer": Peer,
    "fraud_rule": FraudRule,
}
