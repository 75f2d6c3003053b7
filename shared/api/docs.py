"""``/openapi.json``, ``/docs`` and ``/redoc``, served behind the same token as ``/v1``.

Why not FastAPI's own: those routes are always open, and the API document
maps every admin route and body of the process for whoever asks. Here they
are ordinary routes, so the app factory puts the token guard in front of
them (no token configured means loopback only, see ``Settings.check_api_exposure``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

OPENAPI_PATH = "/openapi.json"


def docs_router(app: FastAPI) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(OPENAPI_PATH)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title=f"{app.title} - docs")

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=OPENAPI_PATH, title=f"{app.title} - ReDoc")

    return router
