"""The 422 body for checks pydantic cannot make (references, decks): field and reason."""

from __future__ import annotations

from fastapi import HTTPException, status


def unprocessable(field: str, reason: str, *, where: str = "body") -> HTTPException:
    detail = [{"loc": [where, field], "msg": reason, "type": "value_error"}]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
