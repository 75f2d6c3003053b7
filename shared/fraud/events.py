"""A threshold crossing as its ``fraud.threshold.…`` event: what the edges (new calls) and
the routing service (call ends) both publish, built in one place."""

from __future__ import annotations

from shared.contracts.fraud import FraudCritical, FraudThreshold, FraudWarning
from shared.fraud.rules import Crossing


def threshold_event(
    crossing: Crossing,
    account: str,
    call_id: str,
    source: str,
    minute_seconds: float,
) -> FraudThreshold:
    """The event of one crossing, with its figures and the window they were counted over
    (a minute, a day of ``1440`` minutes, or 0 for counts of now)."""
    windows = {"calls_per_minute": minute_seconds, "minutes_per_day": minute_seconds * 1440}
    kind = FraudCritical if crossing.level == "critical" else FraudWarning
    return kind(
        rule=crossing.rule_id,
        account=account,
        prefix=crossing.prefix,
        metric=crossing.metric,
        value=crossing.value,
        threshold=crossing.threshold,
        window=windows.get(crossing.metric, 0.0),
        block=crossing.block_id,
        blocked=crossing.blocked,
        call_id=call_id,
        source=source,
    )
