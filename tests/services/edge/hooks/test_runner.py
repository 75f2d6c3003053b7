"""The routing hook: alters the decision, falls back when it raises, overruns or misbehaves."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from services.edge.hooks import (
    Decision,
    HookLoadError,
    HookSettings,
    Reject,
    RequestView,
    RoutingHook,
    Target,
)
from shared.sip.message import Request, parse_message

DEFAULT = Decision(
    targets=(
        Target("sip:14075551234@198.51.100.7", "1"),
        Target("sip:14075551234@198.51.100.8", "2"),
    ),
    number="14075551234",
    rule_id="r1",
)


def view(number: str = "14075551234") -> RequestView:
    message = parse_message(
        f"INVITE sip:{number}@edge.example SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n"
        "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:{number}@edge.example>\r\n"
        "Call-ID: c1\r\nCSeq: 1 INVITE\r\nX-Account: 77\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(message, Request)
    return RequestView(message, "192.0.2.1", 5060, "udp")


class SteppingClock:
    """Advances by `step` seconds at every reading: a hook 'takes' exactly `step`."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_hook_sees_the_request_and_reorders_the_targets() -> None:
    seen: list[tuple[str, str | None, str | None, str]] = []

    def hook(request: RequestView, decision: Decision) -> Decision:
        seen.append(
            (request.method, request.uri_user, request.header("x-account"), request.source_ip)
        )
        return replace(decision, targets=decision.targets[::-1])

    result = RoutingHook(hook, "test").run(view(), DEFAULT)
    assert result.outcome == "changed"
    assert [t.gateway_id for t in result.decision.targets] == ["2", "1"]
    assert seen == [("INVITE", "14075551234", "77", "192.0.2.1")]


def test_hook_returning_none_keeps_the_default() -> None:
    hook = RoutingHook(lambda request, decision: None, "test")
    result = hook.run(view(), DEFAULT)
    assert (result.outcome, result.decision) == ("kept", DEFAULT)
    assert hook.counts["kept"] == 1


def test_raising_hook_falls_back_and_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    def hook(request: RequestView, decision: Decision) -> Decision:
        raise KeyError("boom")

    runner = RoutingHook(hook, "broken")
    with caplog.at_level(logging.WARNING, logger="callmesh.edge.hooks"):
        result = runner.run(view(), DEFAULT)
    assert (result.outcome, result.decision) == ("error", DEFAULT)
    assert runner.counts["error"] == 1
    assert len(caplog.records) == 1
    assert "broken" in caplog.records[0].getMessage()
    assert "KeyError" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None  # one line, no traceback


def test_hook_over_budget_has_its_result_discarded() -> None:
    def hook(request: RequestView, decision: Decision) -> Decision:
        return replace(decision, targets=decision.targets[:1])

    runner = RoutingHook(hook, "slow", budget=0.005, clock=SteppingClock(0.010))
    result = runner.run(view(), DEFAULT)
    assert (result.outcome, result.decision) == ("timeout", DEFAULT)
    assert result.elapsed == pytest.approx(0.010)
    assert runner.counts["timeout"] == 1


def test_hook_within_budget_is_honoured() -> None:
    def hook(request: RequestView, decision: Decision) -> Decision:
        return replace(decision, targets=decision.targets[:1])

    runner = RoutingHook(hook, "quick", budget=0.005, clock=SteppingClock(0.001))
    assert runner.run(view(), DEFAULT).outcome == "changed"


@pytest.mark.parametrize(
    "bad",
    [
        "sip:elsewhere",
        Decision(targets=[Target("sip:x")], number="1"),  # type: ignore[arg-type]
        Decision(targets=(), number="1"),
    ],
)
def test_hook_returning_nonsense_falls_back(bad: object) -> None:
    runner = RoutingHook(lambda request, decision: bad, "odd")  # type: ignore[arg-type,return-value]
    result = runner.run(view(), DEFAULT)
    assert (result.outcome, result.decision) == ("invalid", DEFAULT)


def test_example_hook_blocks_and_redirects() -> None:
    hook = HookSettings(module="services.edge.hooks.example").load()
    assert hook is not None
    assert hook.name == "services.edge.hooks.example:route"

    blocked = hook.run(view("+881612345"), replace(DEFAULT, number="+881612345"))
    assert blocked.decision.reject == Reject(403, "Destination Blocked")

    premium = hook.run(view("19005551234"), replace(DEFAULT, number="19005551234"))
    assert premium.decision.targets == (Target("sip:19005551234@198.51.100.50:5060", "premium"),)
    assert hook.run(view(), DEFAULT).outcome == "kept"


def test_loading_failures_are_clear() -> None:
    with pytest.raises(HookLoadError, match="no_such_module"):
        RoutingHook.load("no_such_module")
    with pytest.raises(HookLoadError, match="is not a function"):
        RoutingHook.load("services.edge.hooks.example:PREMIUM_PREFIXES")
    assert HookSettings().load() is None


def test_reject_must_be_an_error_status() -> None:
    with pytest.raises(ValueError, match=r"400\.\.699"):
        Reject(302, "Moved")
