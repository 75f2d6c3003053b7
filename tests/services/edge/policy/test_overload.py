"""Load shedding: the lag is driven explicitly (no sleeping), through the shedder and the core."""

from __future__ import annotations

import pytest

from services.edge.policy.overload import LoadShedder, OverloadSettings
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.sip.message import Response, parse_message
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    GW2,
    UDP_IN,
    Run,
    Table,
    invite,
    only_request,
    sent_to,
    signed,
    statuses,
)

SETTINGS = OverloadSettings(lag_threshold=0.1, sustain=2, hold=2.0, retry_after=7)


def overloaded(shedder: LoadShedder, now: float) -> None:
    """Late probes in a row, as many as start shedding."""
    for _ in range(shedder.settings.sustain):
        shedder.observe(0.5, now)
    assert shedder.shedding


def test_shedding_starts_after_late_probes_in_a_row_and_ends_hold_seconds_after_the_last() -> None:
    shedder = LoadShedder(SETTINGS)
    assert shedder.observe(0.05, now=10.0) is False and not shedder.shedding
    assert shedder.observe(0.15, now=10.1) is False and not shedder.shedding  # one: a pause
    assert shedder.observe(0.15, now=10.2) is True and shedder.shedding  # two in a row
    assert shedder.observe(0.2, now=10.3) is False and shedder.shedding  # same episode
    shedder.observe(0.0, now=12.2)
    assert shedder.shedding  # 1.9 s after the last late probe
    shedder.observe(0.0, now=12.3)
    assert not shedder.shedding
    assert shedder.episodes == 1


def test_late_probes_apart_never_start_shedding() -> None:
    shedder = LoadShedder(SETTINGS)
    for n in range(10):
        shedder.observe(0.3 if n % 2 else 0.0, now=float(n))
    assert not shedder.shedding and shedder.episodes == 0


def test_threshold_zero_never_sheds() -> None:
    shedder = LoadShedder(OverloadSettings(lag_threshold=0.0, sustain=1))
    shedder.observe(5.0, now=1.0)
    assert not shedder.shedding


@pytest.fixture
def shed() -> tuple[Run, LoadShedder]:
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    shedder = LoadShedder(SETTINGS)
    proxy = Proxy(interfaces, NumberRouter(Table()), ProxyTimers(fr=2.0), shedder=shedder)
    return Run(proxy, Table()), shedder


def test_a_new_invite_while_lagging_gets_503_with_retry_after_and_goes_nowhere(
    shed: tuple[Run, LoadShedder],
) -> None:
    run, shedder = shed
    overloaded(shedder, run.now)
    actions = run.send(invite())
    assert statuses(actions) == [503]
    assert sent_to(actions, GW1) == sent_to(actions, GW2) == []
    [data] = sent_to(actions, CALLER)
    response = parse_message(data)
    assert isinstance(response, Response)
    assert response.header("retry-after") == "7"
    assert shedder.refused == 1
    # A retransmission is absorbed by the transaction: the same 503 again, no new work.
    assert statuses(run.send(invite())) == [503]
    assert shedder.refused == 1
    another = invite().replace(b"call-1", b"call-2").replace(b"Kc1", b"Kc2")
    assert statuses(run.send(another)) == [503]
    assert shedder.refused == 2


def test_in_dialog_requests_flow_while_lagging(shed: tuple[Run, LoadShedder]) -> None:
    run, shedder = shed
    overloaded(shedder, run.now)
    bye = (
        f"BYE sip:gw@{GW2.host}:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKbye1\r\n"
        f"Route: {signed(run.proxy, 'old-call')}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag=gw\r\n"
        "Call-ID: old-call\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert only_request(run.send(bye, CALLER, UDP_IN), GW2).method == "BYE"
    reinvite = bye.replace(b"BYE", b"INVITE").replace(b"bye1", b"reinv1")
    assert only_request(run.send(reinvite), GW2).method == "INVITE"
    assert shedder.refused == 0


def test_new_calls_are_routed_again_once_the_loop_caught_up(
    shed: tuple[Run, LoadShedder],
) -> None:
    run, shedder = shed
    overloaded(shedder, run.now)
    assert statuses(run.send(invite(branch="z9hG4bKold"))) == [503]
    shedder.observe(0.01, run.now + 2.5)
    assert only_request(run.send(invite(branch="z9hG4bKnew")), GW1).method == "INVITE"


def test_shedding_starts_at_the_backlogs_high_mark_and_ends_under_half_of_it() -> None:
    shedder = LoadShedder(SETTINGS)  # backlog_high 0.5: from 50 of 100 waiting
    assert shedder.observe_backlog(49, 100) is False and not shedder.shedding
    assert shedder.observe_backlog(50, 100) is True and shedder.shedding and shedder.backlogged
    assert shedder.observe_backlog(60, 100) is False and shedder.shedding  # same episode
    shedder.observe_backlog(25, 100)
    assert shedder.shedding  # the calls up still produce events: under half the mark to end
    shedder.observe_backlog(24, 100)
    assert not shedder.shedding and shedder.episodes == 1


def test_a_backlog_high_mark_of_zero_never_sheds() -> None:
    shedder = LoadShedder(OverloadSettings(backlog_high=0.0))
    shedder.observe_backlog(20_000, 20_000)
    assert not shedder.shedding


def test_shedding_lasts_while_either_cause_holds() -> None:
    shedder = LoadShedder(SETTINGS)
    overloaded(shedder, 10.0)
    assert shedder.observe_backlog(80, 100) is True
    shedder.observe(0.0, now=20.0)  # the loop caught up long ago
    assert not shedder.lagging and shedder.shedding  # the events have not
    shedder.observe_backlog(0, 100)
    assert not shedder.shedding
    assert shedder.observe_backlog(90, 100) is True
    shedder.observe(0.0, now=30.0)  # a prompt probe ends no backlog episode
    assert shedder.shedding and shedder.episodes == 3


def test_a_standing_queue_sheds_after_probes_in_a_row_and_ends_as_it_drains() -> None:
    shedder = LoadShedder(SETTINGS)  # queue_threshold 0.2 by default
    assert shedder.observe_queue(0.1, now=10.0) is False and not shedder.shedding
    assert shedder.observe_queue(0.3, now=10.1) is False and not shedder.shedding  # a burst
    assert shedder.observe_queue(0.0, now=10.2) is False  # it drained: the count starts again
    assert shedder.observe_queue(0.3, now=10.3) is False and not shedder.shedding
    assert shedder.observe_queue(0.2, now=10.4) is True and shedder.shedding and shedder.queued
    assert shedder.observe_queue(0.25, now=10.5) is False and shedder.shedding  # same episode
    shedder.observe_queue(0.19, now=10.6)  # drained under the threshold: no hold
    assert not shedder.shedding and shedder.episodes == 1


def test_a_queue_threshold_of_zero_never_sheds() -> None:
    shedder = LoadShedder(OverloadSettings(queue_threshold=0.0, sustain=1))
    shedder.observe_queue(5.0, now=1.0)
    assert not shedder.shedding


def test_the_lag_and_the_queue_are_counted_apart() -> None:
    """A late probe and a probe with a standing queue, alternating, are neither in a row."""
    shedder = LoadShedder(SETTINGS)
    for n in range(10):
        shedder.observe(0.5 if n % 2 else 0.0, now=float(n))
        shedder.observe_queue(0.0 if n % 2 else 0.5, now=float(n))
    assert not shedder.shedding and shedder.episodes == 0
    overloaded(shedder, 20.0)
    shedder.observe_queue(0.5, now=20.0)
    assert shedder.observe_queue(0.5, now=20.1) is True and shedder.episodes == 2
    shedder.observe(0.0, now=25.0)
    assert not shedder.lagging and shedder.queued and shedder.shedding
