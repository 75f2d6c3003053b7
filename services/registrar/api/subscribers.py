"""``/v1/subscribers``: create, read, delete and list subscribers.

A subscriber is ``username@domain``. The path id is either that full form or
the bare username; a bare username names the one subscriber of that name, so
it is refused with 409 when the name exists in several domains (use the full
form then). On PUT the domain comes from the full id or from the body's
``domain``; when both are given they must agree. Any fields beyond
``domain``, ``password`` and ``enabled`` are kept and shown back; the
password is stored only as HA1s and never shown.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AfterValidator, Field

from services.registrar.subscribers import PasswordRequiredError, Subscriber, SubscriberStore
from shared.bus import Bus
from shared.contracts.registrar import DomainAdded, DomainRemoved
from shared.model import OpenInputModel
from shared.registrar.names import MAX_DOMAIN, MAX_USER, check_domain, check_subscriber_id

SubscriberId = Annotated[
    str,
    Path(
        max_length=MAX_USER + 1 + MAX_DOMAIN,
        description="user@domain, or user alone; the user a SIP user part of 1-64 characters",
    ),
    AfterValidator(check_subscriber_id),
]
After = Annotated[
    str,
    Query(
        max_length=MAX_USER + 1 + MAX_DOMAIN,
        description="'' to start; the previous page's next_cursor",
    ),
]
Limit = Annotated[int, Query(ge=1, le=10_000)]


class SubscriberBody(OpenInputModel):
    domain: Annotated[str, AfterValidator(check_domain)] | None = None
    password: str | None = Field(default=None, min_length=1, max_length=256)
    enabled: bool = True

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def subscribers_router(subscribers: SubscriberStore, bus: Bus) -> APIRouter:
    router = APIRouter(prefix="/subscribers", tags=["registrar"])

    async def resolve(subscriber_id: str) -> tuple[str, str]:
        """(username, domain) named by a path id; 404 or 409 when there is not exactly one."""
        user, at, domain = subscriber_id.partition("@")
        if at:
            return user, domain.lower()
        domains = await subscribers.domains_of(user)
        if not domains:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscriber {user!r}")
        if len(domains) > 1:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"{user!r} exists in {len(domains)} domains; use {user}@<domain>",
            )
        return user, domains[0]

    @router.put("/{subscriber_id}", summary="Create or replace a subscriber")
    async def put(subscriber_id: SubscriberId, body: SubscriberBody) -> dict[str, Any]:
        user, _, path_domain = subscriber_id.partition("@")
        domain = (path_domain or body.domain or "").lower()
        if not domain:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "domain is required")
        if body.domain is not None and body.domain.lower() != domain:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "the body's domain differs from the path's"
            )
        subscriber = Subscriber(user, domain, body.enabled, body.extra_fields())
        try:
            change = await subscribers.put(subscriber, body.password)
        except PasswordRequiredError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
        if change.domain_changed:
            await bus.publish(DomainAdded(domain=domain))
        return {**subscriber.public(), "created": change.happened}

    @router.get("/{subscriber_id}", summary="One subscriber")
    async def get(subscriber_id: SubscriberId) -> dict[str, Any]:
        user, domain = await resolve(subscriber_id)
        found = await subscribers.get(user, domain)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscriber {user}@{domain}")
        return found.public()

    @router.delete(
        "/{subscriber_id}", summary="Delete a subscriber (its bindings stay until they expire)"
    )
    async def delete(subscriber_id: SubscriberId) -> dict[str, Any]:
        user, domain = await resolve(subscriber_id)
        change = await subscribers.delete(user, domain)
        if not change.happened:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscriber {user}@{domain}")
        if change.domain_changed:
            await bus.publish(DomainRemoved(domain=domain))
        return {"id": f"{user}@{domain}", "deleted": True}

    @router.get("", summary="A page of subscribers, in id order")
    async def listing(cursor: After = "", limit: Limit = 1000) -> dict[str, Any]:
        page = await subscribers.page(cursor, limit)
        return {
            "items": [s.public() for s in page],
            "next_cursor": page[-1].id if len(page) == limit else None,
        }

    return router
