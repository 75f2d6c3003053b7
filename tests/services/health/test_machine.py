"""The target state machine: thresholds, edge reports, Retry-After holds, the operator."""

from __future__ import annotations

import pytest

from services.health.machine import TargetHealth
from services.health.targets import gateway_target
from shared.health.policy import ProbeMode, ProbePolicy

GW = gateway_target("1", "sip:192.0.2.1:5060")


def state_of(machine: TargetHealth) -> str:
    """Read through a call so mypy does not narrow the state across transitions."""
    return machine.state


def health(mode: ProbeMode = "always", down: int = 3, up: int = 2) -> TargetHealth:
    policy = ProbePolicy(mode=mode, interval=1.0, failures_to_down=down, successes_to_up=up)
    return TargetHealth.new(GW, policy, now=100.0)


def test_failures_suspect_then_take_down_at_the_threshold() -> None:
    machine = health(down=3)
    assert state_of(machine) == "up"
    assert machine.probe_failed("timeout", 101.0) is True
    assert (machine.state, machine.reason) == ("probing", "timeout")
    assert machine.probe_failed("timeout", 102.0) is False
    assert state_of(machine) == "probing"
    assert machine.probe_failed("timeout", 103.0) is True
    assert (machine.state, machine.since) == ("down", 103.0)
    assert machine.probe_failed("timeout", 104.0) is False


def test_an_answer_between_failures_resets_the_count() -> None:
    machine = health(down=2, up=1)
    machine.probe_failed("timeout", 101.0)
    assert machine.probe_answered(3.0, "answered 200", 102.0) is True
    assert state_of(machine) == "up"
    machine.probe_failed("timeout", 103.0)
    assert state_of(machine) == "probing"


def test_successes_to_come_back() -> None:
    machine = health(down=1, up=2)
    machine.probe_failed("timeout", 101.0)
    assert state_of(machine) == "down"
    assert machine.probe_answered(4.0, "answered 200", 102.0) is False
    assert state_of(machine) == "down"
    assert machine.probe_answered(2.0, "answered 200", 103.0) is True
    assert (machine.state, machine.reason) == ("up", "answered 200")


def test_latency_is_last_and_smoothed() -> None:
    machine = health()
    machine.probe_answered(10.0, "ok", 101.0)
    machine.probe_answered(18.0, "ok", 102.0)
    assert machine.rtt_ms == 18.0
    assert machine.srtt_ms == 11.0


def test_edge_report_suspects_an_up_target() -> None:
    machine = health()
    assert machine.edge_failed("edge: timeout (408)", None, 101.0) is True
    assert state_of(machine) == "probing"
    assert machine.wants_probes


def test_retry_after_holds_down_whatever_the_probes_say() -> None:
    machine = health(up=1)
    assert machine.edge_failed("edge: status (503)", 30, 101.0) is True
    assert (machine.state, machine.until) == ("down", 131.0)
    assert not machine.wants_probes
    assert machine.probe_answered(1.0, "answered 200", 110.0) is False
    assert state_of(machine) == "down"
    assert machine.hold_expired(120.0) is False
    assert machine.hold_expired(131.0) is True
    assert (machine.state, machine.until) == ("probing", None)
    assert machine.probe_answered(1.0, "answered 200", 132.0) is True
    assert state_of(machine) == "up"


def test_never_probed_targets_ignore_reports_without_retry_after() -> None:
    machine = health(mode="never")
    assert not machine.wants_probes
    assert machine.edge_failed("edge: timeout (408)", None, 101.0) is False
    assert machine.edge_failed("edge: status (503)", 5, 101.0) is True
    assert machine.hold_expired(106.0) is True
    assert state_of(machine) == "up"


def test_while_down_probes_only_a_target_in_doubt() -> None:
    machine = health(mode="while_down")
    assert not machine.wants_probes
    machine.edge_failed("edge: transport (503)", None, 101.0)
    assert machine.wants_probes


def test_disabled_is_left_only_by_the_operator() -> None:
    machine = health(down=1, up=1)
    assert machine.disable(101.0) is True
    assert not machine.wants_probes
    assert machine.probe_answered(1.0, "answered 200", 102.0) is False
    assert machine.probe_failed("timeout", 102.0) is False
    assert machine.edge_failed("edge: status (503)", 60, 102.0) is False
    assert state_of(machine) == "disabled"
    assert machine.enable(103.0) is True
    assert (machine.state, machine.reason) == ("probing", "enabled by operator")
    assert machine.enable(104.0) is False


def test_record_round_trip() -> None:
    machine = health()
    machine.probe_answered(5.0, "answered 200", 101.0)
    machine.edge_failed("edge: status (503)", 10, 102.0)
    record = machine.record()
    assert record.target == "gw:1" and record.gateway_id == "1" and record.kind == "gateway"
    again = TargetHealth.restored(GW, machine.policy, record)
    assert again.record() == record


def test_mode_never_releases_a_target_held_down_by_old_probes() -> None:
    machine = health(down=1)
    machine.probe_failed("timeout", 101.0)
    assert state_of(machine) == "down"
    never = machine.policy.model_copy(update={"mode": "never"})
    assert machine.adopt_policy(never, 102.0) is True
    assert (machine.state, machine.reason, machine.since) == (
        "up",
        "not probed (mode never)",
        102.0,
    )
    assert machine.wants_probes is False


def test_mode_never_keeps_a_retry_after_hold_and_the_operators_disable() -> None:
    never = health().policy.model_copy(update={"mode": "never"})
    held = health()
    held.edge_failed("edge: status (503)", 60, 101.0)
    assert held.adopt_policy(never, 102.0) is False
    assert state_of(held) == "down"
    disabled = health()
    disabled.disable(101.0)
    assert disabled.adopt_policy(never, 102.0) is False
    assert state_of(disabled) == "disabled"
    probing = health()
    probing.probe_failed("timeout", 101.0)
    assert probing.adopt_policy(probing.policy, 102.0) is False  # still probed: no change
    assert state_of(probing) == "probing"


def run(machine: TargetHealth, outcomes: str) -> list[str]:
    """Feed probe outcomes ('f' failed, 's' answered) one a second; the state after each."""
    states = []
    for second, outcome in enumerate(outcomes, start=101):
        if outcome == "f":
            machine.probe_failed("timeout", float(second))
        else:
            machine.probe_answered(1.0, "answered 200", float(second))
        states.append(state_of(machine))
    return states


@pytest.mark.parametrize(("down", "up"), [(2, 2), (3, 2), (3, 3), (4, 2)])
def test_only_failures_in_a_row_take_a_suspected_target_down(down: int, up: int) -> None:
    """An answer while probing breaks the run of failures, even when it cannot bring it up."""
    machine = health(down=down, up=up)
    states = run(machine, "f" + "s" * (up - 1) + "f" * (down - 1))
    assert states[-1] == "probing", states
    assert run(machine, "f") == ["down"]


@pytest.mark.parametrize(("down", "up"), [(1, 2), (2, 2), (3, 3), (2, 4)])
def test_only_answers_in_a_row_bring_a_down_target_up(down: int, up: int) -> None:
    machine = health(down=down, up=up)
    assert run(machine, "f" * down)[-1] == "down"
    assert run(machine, "s" * (up - 1) + "f" + "s" * (up - 1))[-1] == "down"
    assert run(machine, "s") == ["up"]
