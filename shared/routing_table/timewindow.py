"""When a rule applies: a daily time-of-day window on some weekdays, within a validity span.

OpenSIPS expresses this as an iCalendar recurrence; operators mostly need "weekdays
08:00-18:00 in Europe/Paris", so that is what is modelled. Overlapping rules of one
prefix are told apart by priority, exactly as in drouting.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from functools import cached_property
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared.model import InputModel

Weekday = Annotated[int, Field(ge=1, le=7)]


class TimeWindow(InputModel):
    """``days`` are ISO weekdays (1 = Monday, empty = every day) of the local date.

    ``start``/``end`` are local times of day, end excluded; an ``end`` before
    ``start`` crosses midnight (22:00-06:00). ``valid_from``/``valid_until``
    bound the whole rule in absolute time (naive values are taken as UTC).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Weekday, ...] = ()
    start: time | None = None
    end: time | None = None
    timezone: str = "UTC"
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TimeWindow:
        if (self.start is None) != (self.end is None):
            raise ValueError("start and end go together")
        if self.start is not None and self.start == self.end:
            raise ValueError("start equals end: omit both for the whole day")
        if self.valid_from and self.valid_until and _utc(self.valid_until) <= _utc(self.valid_from):
            raise ValueError("valid_until must be after valid_from")
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def matches(self, now: datetime) -> bool:
        """Whether the aware instant ``now`` falls inside the window."""
        if self.valid_from is not None and now < _utc(self.valid_from):
            return False
        if self.valid_until is not None and now >= _utc(self.valid_until):
            return False
        local = now.astimezone(self.zone)
        if self.days and local.isoweekday() not in self.days:
            return False
        if self.start is None or self.end is None:
            return True
        clock = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
