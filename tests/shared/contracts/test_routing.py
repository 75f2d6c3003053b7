"""The routing events' keys are the catalogue's (docs/bus.md): what subscribers bind."""

from __future__ import annotations

from shared.contracts.routing import TableChanged
from shared.routing_table.changes import Change, ChangeItem
from shared.routing_table.model import Gateway


def test_a_single_change_is_named_by_its_kind_and_past_tense_op() -> None:
    upsert = ChangeItem.of(Change("upsert", "gateway", "g", Gateway(address="sip:192.0.2.1")))
    delete = ChangeItem.of(Change("delete", "rule", "r"))
    assert TableChanged(version=1, changes=(upsert,)).key() == "routing.gateway.upserted"
    assert TableChanged(version=2, changes=(delete,)).key() == "routing.rule.deleted"
    assert TableChanged(version=3, changes=(upsert, delete)).key() == "routing.batch.applied"
