"""Media relay in the sans-IO core (`relay.py`): offers, answers and deletes asked as `Media`
actions, requests and responses held meanwhile, the relayed dialog marked in its Record-Route."""

from __future__ import annotations

import pytest

from services.edge import metrics
from services.edge.policy import EdgePolicies
from services.edge.policy.guard import Guard
from services.edge.protection import ProtectionSettings
from services.edge.proxy.actions import Action, Media
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.media import MediaSettings, Policy
from services.edge.proxy.routes import Hop, NumberRouter
from shared.contracts.calls import CallFailed
from shared.routing_table.model import Gateway
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import published
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    GW2,
    TRUSTED,
    Run,
    Table,
    answer,
    invite,
    only_request,
    sent_to,
    signed,
    statuses,
)


def sdp(host: str, port: int, version: int = 1) -> bytes:
    return (
        f"v=0\r\no=- {version} {version} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    ).encode()


SDP = sdp("10.0.0.5", 4000)
RELAYED = sdp("192.0.2.99", 30000)
GW_SDP = sdp("203.0.113.1", 5000, 2)
GW_RELAYED = sdp("192.0.2.99", 30002, 2)
PUBLIC_CALLER = Destination("udp", "198.51.100.20", 5070)


def media_run(
    default: Policy = "always",
    *,
    required: bool = False,
    table: dict[str, Policy] | None = None,
    domains: dict[str, Policy] | None = None,
) -> Run:
    """The core with media relay on (`default` where the table sets none), its routing table's
    gateways given `table`'s policies, read through the edge's own policy stages."""
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    dialogs = DialogGate(RecordRouteSigner.ephemeral(), lambda source: source.host in TRUSTED)
    routes = Table()
    for gateway_id, policy in (table or {}).items():
        gateway = routes.index.gateways[gateway_id]
        record = Gateway(address=gateway.address, prefix=gateway.prefix, media_relay=policy)
        routes.put("gateway", gateway_id, record)
    guard = Guard(ProtectionSettings(), "edge-test", lambda source: source.host in TRUSTED)
    proxy = Proxy(
        interfaces,
        NumberRouter(routes),
        ProxyTimers(fr=2.0, fr_inv=10.0),
        EdgePolicies(routes, guard),
        dialogs=dialogs,
        media=MediaSettings(default, required, retry_after=7, domains=domains or {}),
    )
    return Run(proxy, routes)


@pytest.fixture
def run() -> Run:
    return media_run()


def with_sdp(data: bytes, sdp: bytes = SDP) -> bytes:
    message = parse_message(data)
    message.set_body(sdp, "application/sdp")
    return message.to_bytes()


def media(actions: list[Action]) -> list[Media]:
    return [action for action in actions if isinstance(action, Media)]


def to_caller(actions: list[Action]) -> Response:
    [data] = [d for d in sent_to(actions, CALLER) if d.startswith(b"SIP/2.0 ")]
    response = parse_message(data)
    assert isinstance(response, Response)
    return response


def offered(run: Run, data: bytes | None = None) -> Request:
    """A relayed INVITE taken through rtpengine's offer: what the first gateway gets."""
    [offer] = media(run.send(data or with_sdp(invite())))
    return only_request(run.proxy.media_done(offer.ticket, RELAYED, run.now), GW1)


def test_an_invite_waits_for_the_offer_and_leaves_with_rtpengines_sdp(run: Run) -> None:
    actions = run.send(with_sdp(invite()))
    assert statuses(actions) == [100]
    assert sent_to(actions, GW1) == []
    [offer] = media(actions)
    assert (offer.command, offer.call_id, offer.from_tag, offer.to_tag) == (
        "offer",
        "call-1",
        "a1",
        None,
    )
    assert offer.sdp == SDP
    again = run.send(with_sdp(invite()))  # a retransmission while it waits: absorbed
    assert media(again) == [] and sent_to(again, GW1) == [] and statuses(again) == [100]
    forwarded = only_request(run.proxy.media_done(offer.ticket, RELAYED, run.now), GW1)
    assert forwarded.body == RELAYED
    assert forwarded.content_length == len(RELAYED)
    [record_route] = forwarded.headers("record-route")
    assert ";cm-media;" in record_route
    assert (
        record_route
        == f"<sip:{EDGE}:5060;lr{run.proxy.dialogs.route_params('call-1', None, True)}>"
    )
    retransmitted = run.later(0.6)  # Timer A: the client transaction sends the rewritten one
    assert only_request(retransmitted, GW1).body == RELAYED


def test_the_answers_sdp_is_rewritten_before_it_goes_upstream(run: Run) -> None:
    forwarded = offered(run)
    ringing = run.send(
        answer(forwarded, 183, "Content-Type: application/sdp\r\n")[:-4] + b"\r\n\r\n", GW1
    )
    assert media(ringing) == []  # no SDP in it (Content-Length 0): relayed at once
    progress = with_sdp(answer(forwarded, 183), GW_SDP)
    actions = run.send(progress, GW1)
    assert statuses(actions) == []
    [rewrite] = media(actions)
    assert (rewrite.command, rewrite.from_tag, rewrite.to_tag, rewrite.sdp) == (
        "answer",
        "a1",
        "gw",
        GW_SDP,
    )
    sent = to_caller(run.proxy.media_done(rewrite.ticket, GW_RELAYED, run.now))
    assert (sent.status, sent.body) == (183, GW_RELAYED)
    same = run.send(with_sdp(answer(forwarded, 200), GW_SDP), GW1)  # the 183's SDP again
    assert media(same) == []  # the same rewrite, no round trip
    assert to_caller(same).body == GW_RELAYED
    changed = GW_SDP.replace(b"5000", b"5002")
    ok = with_sdp(answer(forwarded, 200), changed)
    [again] = media(run.send(ok, GW1))  # a new SDP is asked again
    assert again.sdp == changed
    assert to_caller(run.proxy.media_done(again.ticket, GW_RELAYED, run.now)).body == GW_RELAYED
    repeated = run.send(ok, GW1)  # the 2xx retransmitted: no round trip
    assert media(repeated) == [] and to_caller(repeated).body == GW_RELAYED


def test_an_answer_at_rtpengine_keeps_its_branchs_request_until_relayed(run: Run) -> None:
    """The 2xx waits for rtpengine's SDP: relayed then, it pops the edge's Via against the
    branch's request and writes the callee's leg from it, so the request is held as bytes
    only after that (not read again from them)."""
    forwarded = offered(run)
    [rewrite] = media(run.send(with_sdp(answer(forwarded, 200), GW_SDP), GW1))
    [client] = run.proxy._branches
    assert client.answered and client.parsed_request is not None
    assert to_caller(run.proxy.media_done(rewrite.ticket, GW_RELAYED, run.now)).status == 200
    assert client.parsed_request is None


def test_a_failed_call_deletes_its_session(run: Run) -> None:
    forwarded = offered(run)
    actions = run.send(answer(forwarded, 486), GW1)
    assert statuses(actions) == [486]
    assert [(m.command, m.call_id, m.ticket) for m in media(actions)] == [("delete", "call-1", 0)]


def test_a_call_cancelled_during_the_offer_is_487_and_deleted(run: Run) -> None:
    [offer] = media(run.send(with_sdp(invite())))
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    assert statuses(run.send(cancel)) == [200]
    actions = run.proxy.media_done(offer.ticket, RELAYED, run.now)
    assert sent_to(actions, GW1) == []
    assert statuses(actions) == [487]
    assert [m.command for m in media(actions)] == ["delete"]


def test_without_rtpengine_a_required_relay_refuses_503_with_retry_after() -> None:
    run = media_run(required=True)
    [offer] = media(run.send(with_sdp(invite())))
    before = metrics.MEDIA_FAILURES["offer", "rejected"]
    actions = run.proxy.media_done(offer.ticket, None, run.now)
    assert sent_to(actions, GW1) == []
    refused = to_caller(actions)
    assert (refused.status, refused.header("retry-after")) == (503, "7")
    assert media(actions) == []  # no session was made
    assert metrics.MEDIA_FAILURES["offer", "rejected"] == before + 1


def test_a_required_relays_503_is_the_published_calls_failure() -> None:
    run = media_run(required=True)
    run.proxy.call_events = CallEvents("edge-test", wall_offset=0.0)
    [offer] = media(run.send(with_sdp(invite())))
    actions = run.proxy.media_done(offer.ticket, None, run.now)
    [failed] = [event for event in published(actions) if isinstance(event, CallFailed)]
    assert (failed.status, failed.reason, failed.origin) == (
        503,
        "Service Unavailable (media relay)",
        "edge",
    )


def test_without_rtpengine_an_optional_relay_carries_the_call_on_unrelayed(run: Run) -> None:
    [offer] = media(run.send(with_sdp(invite())))
    before = metrics.MEDIA_FAILURES["offer", "unrelayed"]
    forwarded = only_request(run.proxy.media_done(offer.ticket, None, run.now), GW1)
    assert metrics.MEDIA_FAILURES["offer", "unrelayed"] == before + 1
    assert forwarded.body == SDP
    assert forwarded.headers("record-route") == [signed(run.proxy, "call-1")]  # no cm-media
    assert media(run.send(with_sdp(answer(forwarded, 200), GW_SDP), GW1)) == []


def test_never_and_no_sdp_ask_nothing() -> None:
    never = media_run("never")
    actions = never.send(with_sdp(invite()))
    assert media(actions) == [] and only_request(actions, GW1).body == SDP
    always = media_run("always")
    actions = always.send(invite())  # no SDP: a late offer is not relayed
    assert media(actions) == [] and only_request(actions, GW1).body == b""


def test_nat_relays_a_caller_behind_nat_only() -> None:
    natted = media_run("nat")  # the Via names 10.0.0.5, the packet came from 198.51.100.20
    assert [m.command for m in media(natted.send(with_sdp(invite())))] == ["offer"]
    public = media_run("nat")
    direct = (
        invite()
        .replace(b"10.0.0.5:5070;branch", b"198.51.100.20:5070;branch")
        .replace(b"alice@10.0.0.5", b"alice@198.51.100.20")
    )
    public_sdp = SDP.replace(b"10.0.0.5", b"198.51.100.20")
    actions = public.send(with_sdp(direct, public_sdp), PUBLIC_CALLER)
    assert media(actions) == [] and only_request(actions, GW1).body == public_sdp


def test_the_gateways_policy_decides_per_branch() -> None:
    run = media_run("never", table={"1": "never", "2": "always"})
    first = offered(run)  # gateway 2 relays: the offer is made before the first branch
    assert first.body == SDP
    assert first.headers("record-route") == [signed(run.proxy, "call-1")]
    second = only_request(run.send(answer(first, 503), GW1), GW2)
    assert second.body == RELAYED
    assert ";cm-media;" in str(second.header("record-route"))


def test_an_unrelayed_branchs_2xx_deletes_the_session_its_1xx_does_not() -> None:
    """The offer was made for gateway 2; gateway 1, unrelayed, answers the call."""
    run = media_run("never", table={"1": "never", "2": "always"})
    first = offered(run)
    assert media(run.send(with_sdp(answer(first, 180), GW_SDP), GW1)) == []
    ok = run.send(with_sdp(answer(first, 200), GW_SDP), GW1)
    assert media(ok) == [Media("delete", "call-1", "", None, b"", 0)]


def test_an_answer_rtpengine_cannot_give_goes_upstream_as_it_came_and_is_counted(
    run: Run,
) -> None:
    forwarded = offered(run)
    [rewrite] = media(run.send(with_sdp(answer(forwarded, 183), GW_SDP), GW1))
    before = metrics.MEDIA_FAILURES["answer", "unrelayed"]
    progress = to_caller(run.proxy.media_done(rewrite.ticket, None, run.now))
    assert (progress.status, progress.body) == (183, GW_SDP)
    assert metrics.MEDIA_FAILURES["answer", "unrelayed"] == before + 1


def test_a_final_failure_with_sdp_is_not_asked_for_an_answer(run: Run) -> None:
    forwarded = offered(run)
    moved = run.send(with_sdp(answer(forwarded, 300), GW_SDP), GW1)
    assert "answer" not in [m.command for m in media(moved)]


def test_each_new_relayed_call_is_counted_once(run: Run) -> None:
    before = metrics.MEDIA_RELAYED_CALLS.value
    offered(run)
    offered(run, with_sdp(invite().replace(b"call-1", b"call-2").replace(b"Kc1", b"Kc2")))
    assert metrics.MEDIA_RELAYED_CALLS.value == before + 2


def test_the_callers_domain_decides_where_the_table_sets_nothing() -> None:
    """CALLMESH_MEDIA_RELAY_DOMAINS: alice is of example.com (her From); toward a gateway the
    table sets nothing for, her domain's policy applies; a gateway's own policy still wins."""
    relayed = media_run("never", domains={"example.com": "always"})
    assert [m.command for m in media(relayed.send(with_sdp(invite())))] == ["offer"]
    other = media_run("never", domains={"other.example": "always"})
    assert media(other.send(with_sdp(invite()))) == []
    overruled = media_run(
        "never", table={"1": "never", "2": "never"}, domains={"example.com": "always"}
    )
    assert media(overruled.send(with_sdp(invite()))) == []


def test_a_call_to_a_subscriber_follows_the_callees_domain() -> None:
    settings = MediaSettings("nat", domains={"retail.example": "always", "pbx.example": "never"})
    message = parse_message(
        invite("sip:bob@Retail.Example").replace(b"alice@example.com", b"alice@pbx.example")
    )
    assert isinstance(message, Request)
    assert settings.domain_policy(message, to_subscriber=True) == "always"
    assert settings.domain_policy(message, to_subscriber=False) == "never"
    assert MediaSettings("nat").domain_policy(message, to_subscriber=True) is None


def test_a_relayed_dialogs_bye_deletes_and_its_reinvite_is_offered(run: Run) -> None:
    route = f"<sip:{EDGE}:5060;lr{run.proxy.dialogs.route_params('call-1', None, True)}>"
    bye = (
        f"BYE sip:gw@{GW1.host} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKbye;rport\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:14075551234@example.com>;tag=gw\r\n"
        "Call-ID: call-1\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\n"
        f"Route: {route}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    actions = run.send(bye)
    assert [(m.command, m.call_id) for m in media(actions)] == [("delete", "call-1")]
    assert only_request(actions, GW1).method == "BYE"
    reinvite = with_sdp(
        bye.replace(b"BYE sip", b"INVITE sip")
        .replace(b"3 BYE", b"2 INVITE")
        .replace(b"z9hG4bKbye", b"z9hG4bKre")
    )
    [offer] = media(run.send(reinvite))
    assert (offer.command, offer.to_tag) == ("offer", "gw")
    assert only_request(run.proxy.media_done(offer.ticket, RELAYED, run.now), GW1).body == RELAYED
    unmarked = bye.replace(b";cm-media", b"").replace(b"z9hG4bKbye", b"z9hG4bKb2")
    assert statuses(run.send(unmarked)) == [403]  # the mark is covered by the signature


def test_a_call_another_edge_relayed_is_not_offered_again(run: Run) -> None:
    marked = f"<sip:192.0.2.11:5060;lr{run.proxy.dialogs.route_params('call-1', None, True)}>"
    actions = run.send(with_sdp(invite(extra=f"Record-Route: {marked}\r\n")))
    assert media(actions) == [] and only_request(actions, GW1).body == SDP


@pytest.mark.parametrize(
    "route",
    [
        "<sip:203.0.113.66;lr;cm-media>",  # the mark, unsigned
        "<sip:203.0.113.66;lr;cm-media;cm-rr=0.00112233445566778899aabb>",  # a made-up token
        "<sip:cm-media.example.com;lr>",  # the text, not the mark
    ],
)
def test_a_callers_own_media_mark_does_not_keep_its_media_unrelayed(run: Run, route: str) -> None:
    """Only a mark an edge of the deployment signed for the call says it is relayed already;
    before, any Record-Route holding `cm-media` made the edge skip rtpengine, policy or not."""
    actions = run.send(with_sdp(invite(extra=f"Record-Route: {route}\r\n")))
    [offer] = media(actions)
    assert offer.command == "offer"


def test_a_media_mark_signed_for_another_call_does_not_count(run: Run) -> None:
    marked = f"<sip:192.0.2.11:5060;lr{run.proxy.dialogs.route_params('call-9', None, True)}>"
    [offer] = media(run.send(with_sdp(invite(extra=f"Record-Route: {marked}\r\n"))))
    assert offer.command == "offer"


def test_a_trusted_peers_unsigned_media_mark_deletes_no_session(run: Run) -> None:
    """A trusted source's in-dialog request follows its Route without a token (RFC 3261 §16);
    its `cm-media` mark (beside a token that verifies for nothing) made the edge delete the
    rtpengine session of any Call-ID it named."""
    bye = (
        f"BYE sip:alice@10.0.0.5 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKtbye\r\n"
        "From: <sip:14075551234@example.com>;tag=gw\r\n"
        "To: <sip:alice@example.com>;tag=a1\r\n"
        "Call-ID: someone-elses-call\r\nCSeq: 9 BYE\r\nMax-Forwards: 70\r\n"
        f"Route: <sip:{EDGE}:5060;lr;cm-media;cm-rr=0.00112233445566778899aabb>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    actions = run.send(bye, GW1)
    assert media(actions) == []
    assert sent_to(actions, Destination("udp", "10.0.0.5", 5060))  # still routed, as before


def test_a_gateway_hop_without_a_rule_is_decided_by_the_callers_domain() -> None:
    """A routing hook's gateway target with no rule is still toward a gateway, not toward a
    subscriber: the caller's (From) domain policy applies, not the Request-URI's."""
    run = media_run("never", domains={"example.com": "always"})
    request = parse_message(invite())
    assert isinstance(request, Request)
    hop = Hop(f"sip:14075551234@{GW1.host}", GW1, "1", f"sip:{GW1.host}", None)
    [decided] = run.proxy._relayed_hops([hop], request, CALLER)
    assert decided.relay
