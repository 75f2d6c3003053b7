"""Build one FastAPI app from the routers of the services a process runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastapi import APIRouter, Depends, FastAPI

from shared.api.auth import token_guard
from shared.api.errors import install_error_handlers
from shared.api.metrics import MetricsSource
from shared.api.probes import probes_router
from shared.service import ReadinessCheck


def create_app(
    title: str,
    routers: Iterable[APIRouter],
    checks: Sequence[tuple[str, ReadinessCheck]],
    api_token: str | None,
    metrics_sources: Sequence[MetricsSource] = (),
) -> FastAPI:
    """Probes at the root; every service router under ``/v1`` behind the token guard."""
    app = FastAPI(title=title, version="1")
    install_error_handlers(app)
    app.include_router(probes_router(checks, metrics_sources))
    guard = [Depends(token_guard(api_token))]
    for router in routers:
        app.include_router(router, prefix="/v1", dependencies=guard)
    return app
