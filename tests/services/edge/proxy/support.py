"""A routing table held in memory behind the routing cache's lookup interface.

The sans-IO proxy tests drive `Proxy` without Redis or a bus; this gives them
the edge's own `lookup`/`translate` (`IndexRoutes`, which `RoutingCache`
extends) over a real `RoutingIndex`.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping

from services.edge.proxy.actions import Action, Publish
from shared.contracts.calls import CallAnswered, CallEvent
from shared.routing_table.cache import IndexRoutes
from shared.routing_table.model import Gateway, Kind, Record, Rule


class MemoryTable(IndexRoutes):
    def __init__(self, gateways: Mapping[str, Gateway], rules: Mapping[str, Rule]) -> None:
        super().__init__()
        for gateway_id, gateway in gateways.items():
            self.put("gateway", gateway_id, gateway)
        for rule_id, rule in rules.items():
            self.put("rule", rule_id, rule)

    def put(self, kind: Kind, record_id: str, record: Record) -> None:
        self.index.put(kind, record_id, record)


def published(actions: list[Action]) -> list[CallEvent]:
    """The call events among `actions`, each checked valid as the consumer will read it."""
    events = [a.event for a in actions if isinstance(a, Publish) and isinstance(a.event, CallEvent)]
    for event in events:
        validated = type(event).model_validate_json(event.model_dump_json())
        assert validated == event
        # Built without validation, it must still be one: its set fields, a pickled copy.
        assert event.model_fields_set == validated.model_fields_set
        assert pickle.loads(pickle.dumps(event)) == validated
    return events


def without_legs(events: list[CallEvent]) -> list[CallEvent]:
    """`events` with each `CallAnswered`'s hang-up facts left out (tests of other facts)."""
    bare = {"cseq": None, "caller_leg": None, "callee_leg": None}
    return [
        CallAnswered.model_validate({**e.model_dump(), **bare})
        if isinstance(e, CallAnswered)
        else e
        for e in events
    ]
