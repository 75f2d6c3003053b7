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

    return router
