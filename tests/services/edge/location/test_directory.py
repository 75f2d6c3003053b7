"""The edge's location directory: answers, events over them, and reads that events overtake."""

from __future__ import annotations

import pytest

from services.edge.location import (
    BindingsQuery,
    Directory,
    DomainQuery,
    Missing,
    NonceCountQuery,
)
from shared.registrar.model import Location

AOR = "sip:bob@example.com"


def location(contact: str, q: float | None = None, expires_at: float = 1000.0) -> Location:
    return Location(
        aor=AOR,
        contact=contact,
        expires_at=expires_at,
        q=q,
        received=contact,
        transport="udp",
        edge="edge-a",
    )


PHONE = location("sip:bob@192.0.2.1:5060")
LAPTOP = location("sip:bob@192.0.2.2:5060", q=0.5)


def test_an_unknown_answer_is_missing_and_names_its_query() -> None:
    directory = Directory()
    with pytest.raises(Missing) as missing:
        directory.bindings(AOR, now=0.0)
    assert missing.value.query == BindingsQuery(AOR)


def test_a_learnt_answer_is_given_until_it_ages_out() -> None:
    directory = Directory()
    directory.learn(BindingsQuery(AOR), (PHONE,), now=0.0)
    assert directory.bindings(AOR, now=299.0) == (PHONE,)
    with pytest.raises(Missing):
        directory.bindings(AOR, now=300.0)


def test_events_update_a_cached_aor_in_forking_order() -> None:
    directory = Directory()
    directory.learn(BindingsQuery(AOR), (LAPTOP,), now=0.0)
    directory.apply_binding(PHONE, present=True, now=1.0)
    assert directory.bindings(AOR, now=2.0) == (PHONE, LAPTOP)  # q 1.0 before q 0.5
    directory.apply_binding(LAPTOP, present=False, now=3.0)
    assert directory.bindings(AOR, now=4.0) == (PHONE,)


def test_an_event_for_an_aor_not_cached_does_not_invent_its_list() -> None:
    directory = Directory()
    directory.apply_binding(PHONE, present=True, now=0.0)
    with pytest.raises(Missing):
        directory.bindings(AOR, now=1.0)


def test_a_read_does_not_overwrite_a_removal_that_arrived_while_it_was_in_flight() -> None:
    directory = Directory()
    directory.learn(BindingsQuery(AOR), (PHONE,), now=0.0)
    started = directory.reading()  # the cache aged out; a read of Redis begins...
    directory.apply_binding(PHONE, present=False, now=1.0)  # ...the phone unregisters...
    directory.learn(BindingsQuery(AOR), (PHONE,), now=2.0, read_at=started)  # ...stale read
    assert directory.bindings(AOR, now=3.0) == ()


def test_a_read_overtaken_by_an_event_on_an_uncached_aor_is_read_again() -> None:
    directory = Directory()
    started = directory.reading()
    directory.apply_binding(LAPTOP, present=True, now=1.0)
    directory.learn(BindingsQuery(AOR), (PHONE,), now=2.0, read_at=started)
    with pytest.raises(Missing):  # neither the read nor the lone event is the whole list
        directory.bindings(AOR, now=3.0)
    directory.learn(BindingsQuery(AOR), (PHONE, LAPTOP), now=4.0, read_at=directory.reading())
    assert directory.bindings(AOR, now=5.0) == (PHONE, LAPTOP)


def test_events_for_other_aors_do_not_spoil_a_read() -> None:
    directory = Directory()
    started = directory.reading()
    other = location("sip:carol@192.0.2.9:5060").model_copy(update={"aor": "sip:carol@x.org"})
    directory.apply_binding(other, present=True, now=1.0)
    directory.learn(BindingsQuery(AOR), (PHONE,), now=2.0, read_at=started)
    assert directory.bindings(AOR, now=3.0) == (PHONE,)


def test_a_read_started_before_a_forget_all_is_not_kept() -> None:
    directory = Directory()
    started = directory.reading()
    directory.forget_all()
    directory.learn(BindingsQuery(AOR), (PHONE,), now=1.0, read_at=started)
    with pytest.raises(Missing):
        directory.bindings(AOR, now=2.0)
    directory.learn(BindingsQuery(AOR), (PHONE,), now=3.0, read_at=directory.reading())
    assert directory.bindings(AOR, now=4.0) == (PHONE,)


def test_a_domain_read_does_not_undo_a_domain_event() -> None:
    directory = Directory()
    started = directory.reading()
    directory.apply_domain("Example.com", local=False, now=1.0)
    directory.learn(DomainQuery("example.com"), True, now=2.0, read_at=started)
    assert directory.is_local_domain("example.com", now=3.0) is False


def test_a_nonce_count_claim_is_used_up_by_asking() -> None:
    directory = Directory()
    with pytest.raises(Missing) as missing:
        directory.claim_nonce_count("n1", 1, now=0.0)
    assert missing.value.query == NonceCountQuery("n1", 1)
    directory.learn(NonceCountQuery("n1", 1), True, now=1.0)
    assert directory.claim_nonce_count("n1", 1, now=2.0) is True
    with pytest.raises(Missing):  # a replay asks Redis again
        directory.claim_nonce_count("n1", 1, now=3.0)
    directory.learn(NonceCountQuery("n1", 1), False, now=4.0)
    assert directory.claim_nonce_count("n1", 1, now=5.0) is False
