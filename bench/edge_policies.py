"""Median cost per message of the edge's policy blocks, in microseconds.

Run `python -m bench.edge_policies` (or `python bench/edge_policies.py`).
Messages are parsed outside the timed loop (parsing is `bench.sip_parse`'s
business), so each figure is what the block adds on top of forwarding:
topology hiding and restoring, a three-rule manipulation set, a routing
hook call, an ACL lookup, a flood check, a scanner check, a call-limit
acquire/release pair.  The first row, a full `validate()` of the same
INVITE, is the yardstick for this machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.edge.hooks import Decision, RequestView, RoutingHook, Target
from services.edge.protection import (
    AddressAcl,
    FloodDetector,
    FloodSettings,
    ScannerDetector,
    ScannerSettings,
)
from services.edge.topology import (
    EdgeAddress,
    Keyring,
    hide_request,
    new_secret,
    restore_request,
    restore_response,
)
from shared.routing_table.manipulation import RuleSet, apply
from shared.routing_table.topology import TopologyOptions
from shared.sip.message import Request, Response, parse_message

INVITE = (
    b"INVITE sip:+14075551234@198.51.100.7:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKedge1\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKproxy1;received=192.168.1.5\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKast77;rport=5060\r\n"
    b"Record-Route: <sip:203.0.113.5:5060;lr>\r\n"
    b"Record-Route: <sip:192.168.1.5;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "1000" <sip:1000@192.168.1.10>;tag=as1234\r\n'
    b"To: <sip:+14075551234@192.168.1.5>\r\n"
    b"Contact: <sip:1000@192.168.1.10:5060>\r\n"
    b"Call-ID: 3c2a7d1e@192.168.1.10\r\n"
    b"CSeq: 102 INVITE\r\n"
    b"User-Agent: Asterisk PBX 18\r\n"
    b"X-Internal-Id: 42\r\n"
    b"Content-Length: 0\r\n\r\n"
)
KEYRING = Keyring.parse(f"1:{new_secret()}")
EDGE = EdgeAddress("203.0.113.5", 5060)
OPTIONS = TopologyOptions(mask_call_id=True)
RULES = [
    RuleSet.model_validate(
        {
            "id": "carrier",
            "scope": {"kind": "gateway", "id": "1"},
            "rules": [
                {"action": "rewrite_ruri_user", "strip": 1, "prefix": "00"},
                {"action": "remove_header", "pattern": "^x-"},
                {"action": "add_header", "name": "X-Account", "value": "4711"},
            ],
        }
    )
]
DECISION = Decision((Target("sip:14075551234@198.51.100.7", "1"),), "14075551234", "r1")


def parsed(data: bytes) -> Any:
    return parse_message(data)


def hidden_invite() -> Request:
    request = parsed(INVITE)
    return hide_request(request, EDGE, KEYRING, OPTIONS)


def answer_to(invite: Request) -> bytes:
    lines = ["SIP/2.0 200 OK"]
    lines += [f"Via: {via}" for via in invite.headers("via")]
    lines += [f"Record-Route: {rr}" for rr in invite.headers("record-route")]
    lines += [
        f"From: {invite.header('from')}",
        f"To: {invite.header('to')};tag=gw",
        f"Call-ID: {invite.call_id}",
        "CSeq: 102 INVITE",
        "Contact: <sip:gw@198.51.100.7>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def bye_from_gateway(invite: Request) -> bytes:
    return (
        f"BYE {invite.contacts[0].uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKgw\r\n"
        f"Route: {invite.headers('record-route')[0]}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {invite.header('to')};tag=gw\r\n"
        f"To: {invite.header('from')}\r\n"
        f"Call-ID: {invite.call_id}\r\n"
        "CSeq: 1 BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def median_us(
    make: Callable[[], Any], action: Callable[[Any], object], rounds: int = 31, batch: int = 500
) -> float:
    """Median over `rounds` of the mean per call in a batch of fresh inputs."""
    samples = []
    for _ in range(rounds):
        inputs = [make() for _ in range(batch)]
        start = time.perf_counter_ns()
        for item in inputs:
            action(item)
        samples.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(samples) / 1000


def main() -> None:
    invite = hidden_invite()
    answer = answer_to(invite)
    bye = bye_from_gateway(invite)
    request = parsed(INVITE)
    view = RequestView(request, "192.0.2.1", 5060, "udp")
    hook = RoutingHook(lambda r, d: replace(d, targets=d.targets[::-1]), "bench")
    acl = AddressAcl.parse("198.51.100.0/24,udp:203.0.113.7:5060,2001:db8::/32,10.0.0.0/8")
    pike = FloodDetector(FloodSettings(limit=1_000_000))
    scanner = ScannerDetector(ScannerSettings())
    rows: list[tuple[str, float]] = [
        ("reference: validate()", median_us(lambda: parsed(INVITE), lambda r: r.validate())),
        ("topology: hide INVITE", median_us(lambda: parsed(INVITE), _hide)),
        ("topology: restore 200", median_us(lambda: parsed(answer), _restore_response)),
        ("topology: restore BYE", median_us(lambda: parsed(bye), _restore_request)),
        ("topology: untouched request", median_us(lambda: parsed(INVITE), _restore_plain)),
        ("manipulation: 3 rules", median_us(lambda: parsed(INVITE), lambda r: apply(RULES, r))),
        ("hook: call + checks", median_us(lambda: view, lambda v: hook.run(v, DECISION))),
        ("acl: trusted hit", median_us(lambda: "198.51.100.7", lambda h: acl.trusts(h, 5060))),
        ("acl: miss", median_us(lambda: "192.0.2.200", lambda h: acl.trusts(h, 5060))),
        ("pike: check", median_us(lambda: "192.0.2.1", lambda h: pike.check(h, 1.0))),
        (
            "scanner: check",
            median_us(lambda: "192.0.2.1", lambda h: scanner.check(h, "INVITE", "Zoiper", "1", 0)),
        ),
    ]
    print(f"{'block':<28}{'median µs/message':>18}")
    for name, value in rows:
        print(f"{name:<28}{value:>18.2f}")


def _hide(request: Request) -> None:
    hide_request(request, EDGE, KEYRING, OPTIONS).to_bytes()


def _restore_response(response: Response) -> None:
    restore_response(response, EDGE, KEYRING, OPTIONS).to_bytes()


def _restore_request(request: Request) -> None:
    restore_request(request, EDGE, KEYRING, OPTIONS).to_bytes()


def _restore_plain(request: Request) -> None:
    restore_request(request, EDGE, KEYRING).to_bytes()


if __name__ == "__main__":
    main()
