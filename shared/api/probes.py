"""``/livez`` and ``/readyz``: what orchestrators poll, always open (they carry no token)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.service import ReadinessCheck


def probes_router(checks: Sequence[tuple[str, ReadinessCheck]]) -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        """The process runs: `{"status": "ok"}` (no dependency is asked)."""
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "Some dependency is not ready"}})
    async def readyz() -> JSONResponse:
        """Every dependency answers: `{"status": "ready"}`; else 503 with
        `{"status": "unavailable", "reasons": {"redis": "Redis unreachable", …}}`
        (RabbitMQ, Redis, and each service's own checks such as its routing table)."""
        problems = {}
        for name, check in checks:
            reason = await check()
            if reason is not None:
                problems[name] = reason
        if problems:
            return JSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    return router
