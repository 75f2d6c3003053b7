"""The edge's HTTP resources: its protection state, cluster-wide (``/v1/protection/…``), and
the calls it keeps a trace of, the live ones and their hang-up (``/v1/calls/…``)."""

from services.edge.api.allowlist import allowlist_router
from services.edge.api.blocks import blocks_router
from services.edge.api.calls import calls_router
from services.edge.api.control import control_router

__all__ = ["allowlist_router", "blocks_router", "calls_router", "control_router"]
