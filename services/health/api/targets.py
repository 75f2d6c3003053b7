"""``/v1/targets``: every probed target with its state; operator disable/enable and policies.

Target ids contain ``:`` (``gw:1``, ``ds:farm:sip:10.0.0.1:5060``); the
actions follow Google's custom-method style (``POST /v1/targets/gw:1:disable``),
and a URI with ``/`` or ``;`` is sent percent-encoded.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status

from services.health.operator import Operator, UnknownTargetError
from shared.health.policy import PolicyOverride

TargetId = Annotated[str, Path(min_length=1, max_length=400)]


def targets_router(operator: Operator, probe_timeout: float) -> APIRouter:
    router = APIRouter(prefix="/targets", tags=["health"])

    def not_found(target_id: str) -> HTTPException:
        return HTTPException(status.HTTP_404_NOT_FOUND, f"no target {target_id!r}")

    @router.get("", summary="Every probed target with its state")
    async def listing() -> dict[str, Any]:
        return {"items": await operator.listing()}

    @router.get("/{target_id}", summary="One target")
    async def get(target_id: TargetId) -> dict[str, Any]:
        try:
            return await operator.view(target_id)
        except UnknownTargetError:
            raise not_found(target_id) from None

    async def set_enabled(target_id: str, enabled: bool) -> dict[str, Any]:
        try:
            return await operator.set_enabled(target_id, enabled)
        except UnknownTargetError:
            raise not_found(target_id) from None

    @router.post("/{target_id}:disable", summary="Take a target out until enabled again")
    async def disable(target_id: TargetId) -> dict[str, Any]:
        return await set_enabled(target_id, False)

    @router.post("/{target_id}:enable", summary="Let probes bring a disabled target back")
    async def enable(target_id: TargetId) -> dict[str, Any]:
        return await set_enabled(target_id, True)

    @router.put("/{target_id}/policy", summary="Override a target's probing policy")
    async def put_policy(target_id: TargetId, body: PolicyOverride) -> dict[str, Any]:
        if body.interval is not None and body.interval <= probe_timeout:
            detail = [
                {
                    "loc": ["body", "interval"],
                    "msg": f"must exceed the probe timeout ({probe_timeout:g} s)",
                    "type": "value_error",
                }
            ]
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
        try:
            await operator.set_policy(target_id, body)
            return await operator.view(target_id)
        except UnknownTargetError:
            raise not_found(target_id) from None

    @router.delete("/{target_id}/policy", summary="Back to the default probing policy")
    async def delete_policy(target_id: TargetId) -> dict[str, Any]:
        try:
            if not await operator.set_policy(target_id, None):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"{target_id!r} has no policy")
            return await operator.view(target_id)
        except UnknownTargetError:
            raise not_found(target_id) from None

    return router
