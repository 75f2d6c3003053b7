"""One leg of a dialog pair: the dialog state the edge keeps for one side (RFC 3261 §12).

Each leg is a dialog of its own, the edge being the UAS on the caller's (A) and the
UAC on the target's (B): its own Call-ID, tags, CSeq spaces, route set and remote
target.  Requests the edge sends on a leg carry the edge's Via and Contact alone, and
go to the leg's `peer`: where the caller's requests come from, or where B's INVITE
was sent (a gateway or dispatcher's address), so the engine needs no DNS and reaches
a caller behind NAT.

What is kept is bounded (`MAX_ROUTES`, `MAX_VALUE`): a leg is what the pair's state
record holds, and a peer must not grow it at will.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from shared.sip.address import Address
from shared.sip.branch import new_branch, new_tag
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination

MAX_ROUTES: Final = 8
"""Record-Route values a leg keeps; a dialog asking for more is refused."""
MAX_VALUE: Final = 512
"""Characters of any one value a leg keeps (a URI, an address, a tag, a Call-ID)."""
PAIR_TAG: Final = "cmb2b"
"""What the edge's own tag on each leg starts with: an edge that does not hold the pair
tells a request for one by it (and looks its state up, `runtime.b2bua_state`)."""
TARGET_REFRESH: Final = frozenset({"INVITE", "UPDATE"})
"""Methods that carry the sender's Contact and replace the remote target (§12.2, RFC 3311)."""
SDP_METHODS: Final = frozenset({"INVITE", "UPDATE", "ACK"})
"""Requests whose SDP is an offer or answer (`Leg.sdp`)."""


@dataclass(frozen=True, slots=True)
class PairAddress:
    """Where the edge is reached: its Via sent-by and its Contact (host as in a URI)."""

    host: str
    port: int

    def via(self, transport: str, branch: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.host}:{self.port};branch={branch};rport"

    def contact(self, transport: str) -> str:
        return f"<sip:{self.host}:{self.port};transport={transport}>"


@dataclass(slots=True)
class Leg:
    """One side's dialog as the edge sees it: `local_*` is the edge's, `remote_*` the peer's.

    `local_uri`/`remote_uri` are From/To addresses without their tags.  `remote_tag` is
    None until the far end answers (B's first response with a tag).
    """

    call_id: str
    local_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    peer: Destination
    local_cseq: int = 0
    remote_tag: str | None = None
    remote_cseq: int | None = None
    route_set: tuple[str, ...] = ()
    update: bool = False
    """The peer's last Allow named UPDATE: a session refresh may use one (RFC 4028 §7.4)."""
    sdp: bytes = b""
    """The last SDP the edge sent on this leg (offer or answer): what a session refresh by
    re-INVITE offers again.  Not in the pair's record."""
    sdp_before: bytes | None = None
    """The SDP before the last one sent, while that one's offer may yet be refused."""

    def request(
        self,
        method: str,
        edge: PairAddress,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        cseq: int | None = None,
    ) -> Request:
        """A request on this leg (§12.2.1.1): a new CSeq unless `cseq` (an ACK's) is given,
        the route set as Route, our Via and, for a target refresh, our Contact."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        to = (
            self.remote_uri
            if self.remote_tag is None
            else f"{self.remote_uri};tag={self.remote_tag}"
        )
        transport = self.peer.transport
        fields = [
            ("Via", edge.via(transport, new_branch())),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if self.route_set:
            fields.append(("Route", ", ".join(self.route_set)))
        if method in TARGET_REFRESH:
            fields.append(("Contact", edge.contact(transport)))
        fields.extend(headers)
        request = Request.build(method, self.remote_target, fields, body)
        if method in SDP_METHODS:
            self.sent(request)
        return request

    def sent(self, message: Request | Response) -> None:
        """Note the SDP (a body of type application/sdp) of a message the edge sends here."""
        kind = (message.content_type or "").partition(";")[0].strip().lower()
        if message.body and kind == "application/sdp":
            changed = message.body != self.sdp
            self.sdp_before = self.sdp if changed else None
            self.sdp = message.body
        elif isinstance(message, Request):  # no offer of its own to refuse
            self.sdp_before = None

    def refused(self) -> None:
        """The offer last sent here was refused (a final non-2xx): the session is as it was."""
        if self.sdp_before is not None:
            self.sdp, self.sdp_before = self.sdp_before, None

    def allowed(self, message: Request | Response) -> None:
        """Note the methods the peer allows, from its message's Allow (none: as before)."""
        values = message.headers("allow")
        if values:
            names = (name.strip().upper() for value in values for name in value.split(","))
            self.update = "UPDATE" in names

    def accept(self, request: Request, peer: Destination) -> None:
        """Take an in-dialog request from the peer (§12.2.2), or raise the `SipError` answering it.

        Wrong tags: 481; a CSeq not above the last one: 500 (out of order).  The peer is
        where it came from now (a phone may have moved behind its NAT).
        """
        if request.from_tag != self.remote_tag:
            raise SipError("Call/Transaction Does Not Exist (tags)", 481)
        seq = request.cseq.seq
        if self.remote_cseq is not None and seq <= self.remote_cseq:
            raise SipError("Server Internal Error (CSeq out of order)", 500)
        self.remote_cseq = seq
        self.peer = peer
        self.allowed(request)

    def refresh(self, request: Request) -> None:
        """A target refresh taken on: its Contact is the remote target now (§12.2.2)."""
        if request.contacts:
            self.remote_target = _kept(str(request.contacts[0].uri), "Contact")

    def answered(self, response: Response, *, creating: bool = False) -> None:
        """Note the far end's answer to our request on this leg (§12.1.2, §12.2.1.2).

        The remote tag is the first one seen, or the 2xx's to the `creating` INVITE (a
        fork downstream may answer from another early dialog); a 2xx to a target refresh
        brings the remote target (Contact), to the `creating` INVITE the route set too
        (Record-Route, reversed).
        """
        success = 200 <= response.status < 300
        self.allowed(response)
        if self.remote_tag is None or (creating and success):
            self.remote_tag = _kept(response.to_tag or "", "To tag") or None
        if not success or response.cseq.method not in TARGET_REFRESH:
            return
        if response.contacts:
            self.remote_target = _kept(str(response.contacts[0].uri), "Contact")
        if creating:
            self.route_set = _route_set(reversed(response.headers("record-route")))


def callers_leg(invite: Request, peer: Destination) -> Leg:
    """Leg A, from the caller's INVITE (§12.1.1): the edge is its UAS, with a new To tag."""
    tag = invite.from_tag
    if not tag:
        raise SipError("Bad Request (From without a tag)")
    if not invite.contacts:
        raise SipError("Bad Request (INVITE without a Contact)")
    leg = Leg(
        call_id=_kept(invite.call_id, "Call-ID"),
        local_tag=PAIR_TAG + new_tag(),
        local_uri=_kept(untagged(invite.to), "To"),
        remote_uri=_kept(untagged(invite.from_), "From"),
        remote_target=_kept(str(invite.contacts[0].uri), "Contact"),
        peer=peer,
        remote_tag=_kept(tag, "From tag"),
        remote_cseq=invite.cseq.seq,
        route_set=_route_set(invite.headers("record-route")),
    )
    leg.allowed(invite)
    return leg


def targets_leg(invite: Request, target_uri: str, peer: Destination, call_id: str) -> Leg:
    """Leg B toward `target_uri` (§12.1.2) with the new `call_id`: the edge its UAC, the
    caller's identity (From URI and display name) kept, everything else new; its INVITE will
    be CSeq 1."""
    return Leg(
        call_id=call_id,
        local_tag=PAIR_TAG + new_tag(),
        local_uri=_kept(untagged(invite.from_), "From"),
        remote_uri=_kept(f"<{target_uri}>", "target"),
        remote_target=target_uri,
        peer=peer,
    )


def transfer_leg(caller: Leg, target_uri: str, peer: Destination, call_id: str) -> Leg:
    """Leg C of a transfer toward `target_uri` (the edge its UAC, like leg B): the caller's
    identity (leg A's remote address) as From, everything else new; raises `SipError` for a
    target too long to keep."""
    return Leg(
        call_id=call_id,
        local_tag=PAIR_TAG + new_tag(),
        local_uri=caller.remote_uri,
        remote_uri=_kept(f"<{target_uri}>", "target"),
        remote_target=target_uri,
        peer=peer,
    )


def untagged(address: Address) -> str:
    """`address` as text without its tag parameter."""
    params = tuple(param for param in address.params if param[0] != "tag")
    return str(Address(address.uri, address.display_name, params))


def _route_set(values: Iterable[str]) -> tuple[str, ...]:
    routes = tuple(_kept(value, "Record-Route") for value in values)
    if len(routes) > MAX_ROUTES:
        raise SipError(f"Bad Request (more than {MAX_ROUTES} Record-Route values)")
    return routes


def _kept(value: str, what: str) -> str:
    if len(value) > MAX_VALUE:
        raise SipError(f"Bad Request ({what} longer than {MAX_VALUE} characters)")
    return value
