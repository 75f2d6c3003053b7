"""Median cost of what an edge proxy does to every request: parse, then forward-serialise.

Run `python -m bench.sip_parse` (or `python bench/sip_parse.py`).  For each
sample message it times `parse_message` + reading the fields a proxy routes
on + the forwarding edits (add a Via, decrement Max-Forwards, add a
Record-Route) + `to_bytes()`, and prints the median in microseconds, next to
parse alone and parse + full `validate()` for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.sip.message import Request, Response, parse_message

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:+15551234567@edge.example.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"To: <sip:+15551234567@example.com;user=phone>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Callmesh-Bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

OK_WITH_SDP = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxy1\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10\r\n"
    b"Record-Route: <sip:198.51.100.1;lr>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"To: <sip:+15551234567@example.com;user=phone>;tag=a6c85cf\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:gw@203.0.113.5:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKnashds7;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:bob@example.com>;tag=456248\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b'Contact: <sip:bob@192.0.2.20:5060>;expires=3600;+sip.instance="<urn:uuid:00000000>"\r\n'
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

PROXY_VIA = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxy1"
PROXY_RR = "<sip:198.51.100.1;lr>"


def forward_request(data: bytes) -> bytes:
    request = parse_message(data)
    assert isinstance(request, Request)
    _ = (request.top_via.branch, request.method, request.uri)
    if request.routes:
        request.pop_route()
    request.decrement_max_forwards()
    request.prepend_via(PROXY_VIA)
    request.add_record_route(PROXY_RR)
    return request.to_bytes()


def forward_response(data: bytes) -> bytes:
    response = parse_message(data)
    assert isinstance(response, Response)
    _ = (response.status, response.cseq)
    response.pop_via()
    return response.to_bytes()


def parse_only(data: bytes) -> bytes:
    parse_message(data)
    return data


def parse_and_validate(data: bytes) -> bytes:
    parse_message(data).validate()
    return data


def median_us(action: Callable[[bytes], bytes], data: bytes, iterations: int) -> float:
    """Median over batches of 100 calls, so timer resolution does not dominate."""
    batch = 100
    samples = []
    for _ in range(iterations // batch):
        start = time.perf_counter_ns()
        for _ in range(batch):
            action(data)
        samples.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("iterations", nargs="?", type=int, default=50_000)
    iterations: int = parser.parse_args().iterations
    cases = [
        ("INVITE", INVITE, forward_request),
        ("200 OK + SDP", OK_WITH_SDP, forward_response),
        ("REGISTER", REGISTER, forward_request),
    ]
    print(f"{'message':<14}{'parse':>10}{'forward':>10}{'validate':>10}   (median µs/message)")
    for name, data, forward in cases:
        forward(data)
        parse = median_us(parse_only, data, iterations)
        forwarded = median_us(forward, data, iterations)
        validated = median_us(parse_and_validate, data, iterations)
        print(f"{name:<14}{parse:>10.2f}{forwarded:>10.2f}{validated:>10.2f}")
    print("forward = parse + routing reads + forwarding edits + to_bytes()")


if __name__ == "__main__":
    main()
