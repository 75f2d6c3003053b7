"""``/livez``, ``/readyz`` and ``/metrics``: what orchestrators and Prometheus poll."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from shared.api.metrics import MetricsSource, render
from shared.service import ReadinessCheck


def probes_router(
    checks: Sequence[tuple[str, ReadinessCheck]], metrics_sources: Sequence[MetricsSource] = ()
) -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = {}
        for name, check in checks:
            reason = await check()
            if reason is not None:
                problems[name] = reason
        if problems:
            return JSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(await render(metrics_sources), media_type=CONTENT_TYPE_LATEST)

    return router
