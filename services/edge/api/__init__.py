"""The edge's HTTP resources: its protection state, cluster-wide (``/v1/protection/…``), and
the calls it keeps a trace of (``/v1/calls/…``)."""

from services.edge.api.allowlist import allowlist_router
from services.edge.api.blocks import blocks_router
from services.edge.api.calls import calls_router

__all__ = ["allowlist_router", "blocks_router", "calls_router"]
