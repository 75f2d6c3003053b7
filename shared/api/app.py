"""Build one FastAPI app from the routers of the services a process runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastapi import APIRouter, Depends, FastAPI

from shared.api.auth import token_guard
from shared.api.docs import docs_router
from shared.api.errors import install_error_handlers
from shared.api.metrics import MetricsSource, metrics_router
from shared.api.probes import probes_router
from shared.service import ReadinessCheck
from shared.settings import DEFAULT_API_MAX_BODY


def create_app(
    title: str,
    routers: Iterable[APIRouter],
    checks: Sequence[tuple[str, ReadinessCheck]],
    api_token: str | None,
    metrics_sources: Sequence[MetricsSource] = (),
    *,
    metrics_public: bool = False,
    max_body_size: int = DEFAULT_API_MAX_BODY,
) -> FastAPI:
    """Probes open at the root; the API documents, ``/metrics`` (unless ``metrics_public``)
    and every service router under ``/v1`` behind the token guard.

    Every request body is limited to ``max_body_size`` bytes (413 beyond, told by
    Content-Length or counted as it streams in); a route taking a whole file sets
    its own larger limit.
    """
    app = FastAPI(
        title=title,
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        max_body_size=max_body_size,
    )
    install_error_handlers(app)
    guard = [Depends(token_guard(api_token))]
    app.include_router(probes_router(checks))
    app.include_router(
        metrics_router(metrics_sources), dependencies=[] if metrics_public else guard
    )
    app.include_router(docs_router(app), dependencies=guard)
    for router in routers:
        app.include_router(router, prefix="/v1", dependencies=guard)
    return app
