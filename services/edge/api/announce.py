"""Telling every edge worker about an operator's change, after the store took it."""

from __future__ import annotations

import logging

from fastapi import HTTPException, status

from shared.bus import Bus
from shared.contracts.event import Event

log = logging.getLogger("callmesh.edge.api")


async def announce(bus: Bus, event: Event) -> None:
    """Publish `event`; 503 (the change is stored, edges apply it when they reload) if the
    broker will not take it, so the operator knows the edges may not have it yet."""
    try:
        await bus.publish(event)
    except Exception as error:
        log.warning("could not announce %s: %s", event.routing_key, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "stored, but the bus is unavailable: edges apply it at their next reconnect",
        ) from None
