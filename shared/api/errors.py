"""Uniform error bodies, and one log line (never a traceback) per failed request.

Why not FastAPI's own 422 body: it echoes each offending input whole — the
whole request body for a missing field, a 10 MB password for a too-long one —
and a NaN or infinite input cannot even be written as JSON (a 500). Here a
422 names the field and the reason and quotes at most a short excerpt of a
scalar input, never one of a field whose name says it is secret.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from shared.bus.base import BusUnavailable
from shared.store.client import UNAVAILABLE

log = logging.getLogger("callmesh.api")

SECRET_WORDS = ("password", "passwd", "secret", "token", "ha1", "key", "credential", "auth")
"""A field whose name contains one of these never has its input quoted."""
EXCERPT_CHARS = 32
MAX_ERRORS = 20
MAX_LOC_PARTS = 8
MAX_LOC_CHARS = 64
MAX_MSG_CHARS = 200
MAX_PATH_CHARS = 200
BAD_INPUT = (400, 413, 422)
"""Statuses that mean the client sent something unacceptable: logged as one line each."""

UNAVAILABLE_RETRY_AFTER = 5
"""Seconds a client is told to wait when Redis or RabbitMQ is away (a failover takes a few)."""

_OMITTED = object()


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``detail`` of a 422: ``loc``, ``msg``, ``type`` and a safe ``input`` excerpt."""
    details = []
    for error in errors[:MAX_ERRORS]:
        loc = [_short_loc(part) for part in error.get("loc", ())[:MAX_LOC_PARTS]]
        if len(error.get("loc", ())) > MAX_LOC_PARTS:
            loc.append("…")
        secret = any(_is_secret(part) for part in error.get("loc", ()))
        kind = str(error.get("type", "value_error"))
        msg = str(error.get("msg", ""))
        if secret and kind in ("value_error", "assertion_error"):
            msg = "invalid value"  # a custom check may quote the value in its message
        detail: dict[str, Any] = {"loc": loc, "msg": _clip(msg, MAX_MSG_CHARS), "type": kind}
        excerpt = _OMITTED if secret else _excerpt(error.get("input", _OMITTED))
        if excerpt is not _OMITTED:
            detail["input"] = excerpt
        details.append(detail)
    if len(errors) > MAX_ERRORS:
        details.append({"loc": [], "msg": f"and {len(errors) - MAX_ERRORS} more", "type": "more"})
    return details


def _is_secret(part: object) -> bool:
    return isinstance(part, str) and any(word in part.lower() for word in SECRET_WORDS)


def _short_loc(part: object) -> str | int:
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    return _clip(str(part), MAX_LOC_CHARS)


def _excerpt(value: object) -> object:
    """What of an input may be shown: a short scalar; containers and bytes never are."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**15 else _clip(str(value), EXCERPT_CHARS)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _clip(value, EXCERPT_CHARS)
    return _OMITTED


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _refused(request: Request, status: int, reason: str) -> None:
    log.info(
        "request refused",
        extra={
            "method": request.method,
            "path": _clip(request.url.path, MAX_PATH_CHARS),
            "status": status,
            "reason": reason,
        },
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        details = validation_details(error.errors())
        reasons = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['type']}" for d in details)
        _refused(request, 422, reasons)
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException) -> Response:
        if error.status_code in BAD_INPUT:
            _refused(request, error.status_code, _clip(str(error.detail), MAX_MSG_CHARS))
        return await http_exception_handler(request, error)

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        """Redis or RabbitMQ away after the bounded wait (say, during a failover): 503, never a
        500, so clients retry; the write either happened whole or not at all (one script)."""
        log.warning(
            "request failed: a dependency is unavailable",
            extra={"path": _clip(request.url.path, MAX_PATH_CHARS), "error": type(error).__name__},
        )
        return JSONResponse(
            {"detail": "temporarily unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )

    for kind in (*UNAVAILABLE, BusUnavailable):
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "request failed",
            extra={"path": request.url.path, "error": f"{type(error).__name__}: {error}"},
        )
        return JSONResponse({"detail": "internal error"}, status_code=500)
