"""How one target is probed: mode, interval, thresholds, accepted reply codes.

Modes follow OpenSIPS drouting's ``probe_mode``: ``never``; ``while_down``
(only a target that is down or suspected is probed, to notice it is back);
``always``. Accepted codes are exact statuses (``200``) or classes (``"2xx"``);
an empty list accepts any final response, because any answer proves the peer's
SIP stack is alive (many gateways answer OPTIONS with 404 or 405).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from shared.model import InputModel

ProbeMode = Literal["never", "while_down", "always"]


def _parse_code(value: object) -> int:
    """``200`` → 200; ``"2xx"`` → 2 (a class)."""
    text = str(value).strip().lower()
    if len(text) == 3 and text.endswith("xx") and text[0] in "123456":
        return int(text[0])
    if text.isdigit() and 100 <= int(text) <= 699:
        return int(text)
    raise ValueError(f"not a SIP status or class: {value!r} (e.g. 200 or '2xx')")


def _parse_codes(value: object) -> tuple[int, ...]:
    if isinstance(value, str):  # the environment form: "200,404,5xx"
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of statuses")
    return tuple(_parse_code(item) for item in value)


AcceptedCodes = Annotated[tuple[int, ...], BeforeValidator(_parse_codes)]
"""Statuses (100-699) and classes (1-6, written ``"2xx"``)."""


class ProbePolicy(InputModel):
    """The effective policy of one target (defaults from the settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ProbeMode
    interval: Annotated[float, Field(gt=0, le=86_400)]
    failures_to_down: Annotated[int, Field(ge=1, le=100)]
    successes_to_up: Annotated[int, Field(ge=1, le=100)]
    accepted_codes: AcceptedCodes = ()

    def accepts(self, status: int) -> bool:
        """Whether a final response ``status`` proves the target alive."""
        codes = self.accepted_codes
        return not codes or status in codes or status // 100 in codes


class PolicyOverride(InputModel):
    """The body of ``PUT /v1/targets/{id}/policy``: only the fields given are overridden."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ProbeMode | None = None
    interval: Annotated[float, Field(gt=0, le=86_400)] | None = None
    failures_to_down: Annotated[int, Field(ge=1, le=100)] | None = None
    successes_to_up: Annotated[int, Field(ge=1, le=100)] | None = None
    accepted_codes: AcceptedCodes | None = None

    def over(self, base: ProbePolicy) -> ProbePolicy:
        return base.model_copy(update=self.model_dump(exclude_none=True))

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one field to override")
        return self
