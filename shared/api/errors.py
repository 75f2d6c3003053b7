"""Uniform error bodies, and one log line (never a traceback) per failed request."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("callmesh.api")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "request failed",
            extra={"path": request.url.path, "error": f"{type(error).__name__}: {error}"},
        )
        return JSONResponse({"detail": "internal error"}, status_code=500)
