"""The edge's HTTP resources: its protection state, cluster-wide (``/v1/protection/…``)."""

from services.edge.api.allowlist import allowlist_router
from services.edge.api.blocks import blocks_router

__all__ = ["allowlist_router", "blocks_router"]
