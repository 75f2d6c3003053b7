"""Accepted reply codes and policy overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.health.settings import HealthSettings
from shared.health.policy import PolicyOverride, ProbePolicy

BASE = ProbePolicy(mode="always", interval=10.0, failures_to_down=3, successes_to_up=1)


def test_any_final_response_is_alive_by_default() -> None:
    assert all(BASE.accepts(status) for status in (200, 404, 405, 500, 603))


def test_codes_and_classes() -> None:
    policy = BASE.model_copy(update={"accepted_codes": (2, 404)})
    assert policy.accepts(200) and policy.accepts(202) and policy.accepts(404)
    assert not policy.accepts(405) and not policy.accepts(503)


def test_override_parses_codes_and_keeps_the_rest() -> None:
    override = PolicyOverride.model_validate({"interval": 2, "accepted_codes": ["2xx", 405]})
    policy = override.over(BASE)
    assert (policy.interval, policy.accepted_codes, policy.failures_to_down) == (2.0, (2, 405), 3)


@pytest.mark.parametrize("body", [{}, {"accepted_codes": ["7xx"]}, {"interval": 0}, {"mode": "x"}])
def test_bad_overrides_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PolicyOverride.model_validate(body)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLMESH_HEALTH_ACCEPTED_CODES", "200,404")
    monkeypatch.setenv("CALLMESH_HEALTH_PROBE_INTERVAL", "5")
    settings = HealthSettings()
    assert (settings.accepted_codes, settings.probe_interval) == ((200, 404), 5.0)
    monkeypatch.setenv("CALLMESH_HEALTH_PROBE_TIMEOUT", "5")
    with pytest.raises(ValidationError, match="below the probe interval"):
        HealthSettings()
