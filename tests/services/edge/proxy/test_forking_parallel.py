"""Parallel forking over a subscriber's contacts (`forking.py`): the 2xx/3xx boundary.

A 3xx is a final failure like a 4xx: the other contacts go on ringing (a 600
ending the forking is in `test_subscribers`).
"""

from __future__ import annotations

from tests.services.edge.proxy.test_core import answer, sent_to, statuses
from tests.services.edge.proxy.test_subscribers import (
    CARRIER,
    PHONE,
    TABLET,
    Run,
    call,
    invites_to,
    run,
)

__all__ = ["run"]  # the fixture, shared with test_subscribers


def test_a_300_from_one_contact_lets_the_others_ring_on(run: Run) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    run.send(answer(tablet, 180), TABLET)
    actions = run.send(answer(phone, 300), PHONE)
    assert statuses(actions, CARRIER) == []  # not relayed at once, unlike a 2xx
    assert sent_to(actions, TABLET) == []  # no CANCEL
    assert statuses(run.send(answer(tablet, 200), TABLET), CARRIER) == [200]


def test_after_a_600_a_contact_that_rings_only_then_is_cancelled_not_relayed(run: Run) -> None:
    """§16.7 step 5: the 6xx ends the forking; a branch with no provisional yet is CANCELled
    on its first one, which does not go upstream."""
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    run.send(answer(phone, 600), PHONE)
    actions = run.send(answer(tablet, 180), TABLET)
    assert statuses(actions, CARRIER) == []
    assert [data.split(b" ", 1)[0] for data in sent_to(actions, TABLET)] == [b"CANCEL"]
