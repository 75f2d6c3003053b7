"""The binding rules of RFC 3261 §10.3, without Redis or a bus."""

from __future__ import annotations

import pytest

from bench.registrar import Phone
from services.registrar.register import ExpiryPolicy, Origin, ok_response, update_bindings
from shared.registrar.model import Binding
from shared.sip.errors import SipError
from shared.sip.message import Request, parse_message

NOW = 1_000_000.0
AOR = "sip:alice@example.com"
ORIGIN = Origin("203.0.113.9", 40000, "udp", "edge-a")
POLICY = ExpiryPolicy(min_expires=60, max_expires=3600, default_expires=1800, max_contacts=2)


def request(phone: Phone, **options: object) -> Request:
    message = parse_message(phone.register(**options))  # type: ignore[arg-type]
    assert isinstance(message, Request)
    return message


def apply(req: Request, existing: dict[str, Binding] | None = None) -> list[Binding]:
    update = update_bindings(req, AOR, existing or {}, origin=ORIGIN, policy=POLICY, now=NOW)
    return update.current


@pytest.fixture
def phone() -> Phone:
    return Phone("alice", "example.com", "pw", call_id="c1")


def test_expires_per_contact_then_header_then_default(phone: Phone) -> None:
    contacts = ["<sip:a@h1>;expires=120", "<sip:a@h2>"]
    found = {b.contact: b.expires_at - NOW for b in apply(request(phone, contacts=contacts))}
    assert found == {"sip:a@h1": 120, "sip:a@h2": 600}
    (default,) = apply(request(phone, expires=None))
    assert default.expires_at - NOW == 1800
    (capped,) = apply(request(phone, expires=99999))
    assert capped.expires_at - NOW == 3600


def test_too_brief_is_423_with_min_expires(phone: Phone) -> None:
    with pytest.raises(SipError) as raised:
        apply(request(phone, contacts=["<sip:a@h1>;expires=59"]))
    assert raised.value.status == 423
    assert raised.value.headers == (("Min-Expires", "60"),)


def test_refresh_and_remove(phone: Phone) -> None:
    (first,) = apply(request(phone))
    update = update_bindings(
        request(phone, expires=900),
        AOR,
        {first.contact: first},
        origin=ORIGIN,
        policy=POLICY,
        now=NOW,
    )
    assert [b.contact for b in update.refreshed] == [first.contact]
    assert update.added == []
    assert update.current[0].expires_at == NOW + 900
    gone = update_bindings(
        request(phone, expires=0),
        AOR,
        {first.contact: first},
        origin=ORIGIN,
        policy=POLICY,
        now=NOW,
    )
    assert gone.current == [] and gone.removed == [first]


def test_wildcard_needs_expires_zero_and_order(phone: Phone) -> None:
    (first,) = apply(request(phone))
    with pytest.raises(SipError) as raised:
        apply(request(phone, contacts=["*"], expires=3600), {first.contact: first})
    assert raised.value.status == 400
    assert apply(request(phone, contacts=["*"], expires=0), {first.contact: first}) == []
    with pytest.raises(SipError):
        apply(request(phone, contacts=["*"], expires=0, cseq=1), {first.contact: first})


def test_same_call_id_needs_a_higher_cseq(phone: Phone) -> None:
    (first,) = apply(request(phone, cseq=5))
    for cseq in (4, 5):
        with pytest.raises(SipError, match="out of order"):
            apply(request(phone, cseq=cseq), {first.contact: first})
    assert apply(request(phone, cseq=6), {first.contact: first})[0].cseq == 6
    other = Phone("alice", "example.com", "pw", call_id="c2")
    assert apply(request(other, cseq=1), {first.contact: first})[0].call_id == "c2"


def test_max_contacts(phone: Phone) -> None:
    contacts = ["<sip:a@h1>", "<sip:a@h2>", "<sip:a@h3>"]
    with pytest.raises(SipError) as raised:
        apply(request(phone, contacts=contacts))
    assert raised.value.status == 403


def test_origin_path_params_and_q_are_kept(phone: Phone) -> None:
    req = request(
        phone,
        contacts=['<sip:a@h1;transport=tcp>;q=0.5;+sip.instance="<urn:uuid:1>"'],
        headers=("Path: <sip:p1;lr>, <sip:p2;lr>",),
    )
    (binding,) = apply(req)
    assert binding.contact == "sip:a@h1;transport=tcp"
    assert binding.q == 0.5
    assert binding.params == ';+sip.instance="<urn:uuid:1>"'
    assert binding.path == ("<sip:p1;lr>", "<sip:p2;lr>")
    assert binding.received == "sip:203.0.113.9:40000"
    tcp = Origin("2001:db8::1", 5070, "tcp", "edge-b", "sip:e", 3)
    assert tcp.received == "sip:[2001:db8::1]:5070;transport=tcp"


def test_ok_lists_every_binding_with_remaining_time(phone: Phone) -> None:
    req = request(phone, contacts=["<sip:a@h1>;q=0.1", "<sip:a@h2>;expires=100"])
    update = update_bindings(req, AOR, {}, origin=ORIGIN, policy=POLICY, now=NOW)
    response = ok_response(req, update, NOW + 10, "tag1")
    assert response.status == 200
    assert response.headers("contact") == ["<sip:a@h2>;expires=90", "<sip:a@h1>;expires=590;q=0.1"]
    assert response.to_tag == "tag1"
