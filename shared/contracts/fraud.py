"""The ``fraud.…`` events: a fraud rule's threshold reached, and a block lifted.

The edges publish the thresholds a new call reached (calls per minute,
concurrent calls, sequential calls), the routing service those a call's end
reached (minutes per day) and the blocks operators lift. Each carries the
figures: the count, the level it reached, the rule, the account and prefix,
and the block it set, if any (see docs/fraud.md).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from shared.contracts.event import Event

FRAUD_CALLS_QUEUE = "fraud.calls"
"""The durable work queue ``{ns}.fraud.calls`` of the routing service: call ends for the
fraud counts (concurrent calls freed, minutes added)."""
FRAUD_CALL_ENDS = "accounting.cdr.completed.#"
"""What the queue is bound to: the accounting service's completed call records, one a
message or in ``accounting.cdr.completed.batch``."""
FRAUD_HANGUPS_QUEUE = "edge.fraud.hangups"
"""The durable work queue ``{ns}.edge.fraud.hangups`` the edges consume when
``CALLMESH_FRAUD_HANGUP`` is on: each block reaches one edge, which hangs up the blocked
account's live calls."""
FRAUD_THRESHOLDS = "fraud.threshold.#"
"""What that queue is bound to: every threshold reached (those that set a block count)."""


class FraudThreshold(Event):
    """``account`` reached ``threshold`` of ``metric`` under ``rule``: ``value`` is the count
    (minutes for ``minutes_per_day``) over ``window`` seconds (0: now, for concurrent and
    sequential calls); ``block`` the id of the block this set (``POST
    /v1/fraud/blocks/{id}:unblock`` lifts it), ``blocked`` what it holds."""

    rule: str
    account: str
    prefix: str
    metric: Literal["calls_per_minute", "concurrent", "sequential", "minutes_per_day"]
    value: float
    threshold: int
    window: float
    block: str | None = None
    blocked: Literal["account", "prefix"] | None = None
    call_id: str
    source: str
    """The edge instance (new calls) or ``routing`` (call ends) that saw it."""


class FraudWarning(FraudThreshold):
    routing_key: ClassVar[str] = "fraud.threshold.warning"


class FraudCritical(FraudThreshold):
    routing_key: ClassVar[str] = "fraud.threshold.critical"


class FraudUnblocked(Event):
    """An operator lifted block ``block`` (of ``account``, or its calls to ``prefix``)."""

    routing_key: ClassVar[str] = "fraud.block.removed"

    block: str
    account: str
    prefix: str | None = None
    rule: str
