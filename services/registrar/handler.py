"""The consumer of ``registrar.register``: one REGISTER in, its response out.

A thin adapter: the digest rules (``auth``), the nonces (``nonces``) and the
binding rules (``register``) decide; this module reads the HA1 and the AoR's
bindings (one pipelined round trip), writes the change with the nonce-count
claim (one script, ``bindings``) and posts the events to the outbox, which
publishes them after the response is on its way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from services.registrar.bindings import (
    MAX_ATTEMPTS,
    AorSnapshot,
    BindingStore,
    Commit,
    ConflictError,
    NonceClaim,
)
from services.registrar.outbox import EventOutbox
from services.registrar.register import (
    BindingUpdate,
    ExpiryPolicy,
    Origin,
    ok_response,
    update_bindings,
)
from shared.bus import DeadLetter, WorkMessage
from shared.contracts.registrar import (
    REGISTER_TIMEOUT,
    BindingAdded,
    BindingRefreshed,
    BindingRemoved,
    FailedAuth,
    RegisterReply,
    RegisterRequest,
)
from shared.protection import WrongCredentialsError
from shared.registrar.location import ha1_of, ha1_source
from shared.registrar.model import aor_of
from shared.registrar.nonce_counts import NonceCounts
from shared.sip.auth.check import (
    Verdict,
    challenge_headers,
    check_identity,
    credentials_for,
    judge,
    nonce_count,
)
from shared.sip.auth.nonces import NonceKeeper, NonceState
from shared.sip.auth.offer import DigestOffer
from shared.sip.branch import new_tag
from shared.sip.errors import SipError, SipParseError
from shared.sip.message import Request, parse_message
from shared.sip.responses import error_response, make_response
from shared.sip.uri import SipUri
from shared.store import Store
from shared.store.client import UNAVAILABLE

UNAVAILABLE_OR_LATE: tuple[type[Exception], ...] = (*UNAVAILABLE, TimeoutError)
"""Redis away, or the REGISTER past its `DEADLINE`: answered 503."""
RETRY_AFTER = 5
"""Seconds a phone is told to wait when Redis is away (a Sentinel failover takes a few)."""
DEADLINE = REGISTER_TIMEOUT - 1.0
"""Seconds one REGISTER may spend on Redis, all its commands and waits together, before it
is answered 503: each command may wait ``CALLMESH_REDIS_WAIT`` (and a pool connection as
long), so several in a row would outlast the edge's wait, and the phone would get the edge's
503 while the registrar still worked for no one. The second left over is the bus's."""


class RegisterHandler:
    """Answers :class:`RegisterRequest` messages; see ``shared.contracts.registrar``."""

    def __init__(
        self,
        store: Store,
        outbox: EventOutbox,
        nonces: NonceKeeper,
        policy: ExpiryPolicy,
        *,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
        offer: DigestOffer,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.nonces = nonces
        self.policy = policy
        self.log = log
        self.clock = clock
        self.offer = offer
        self.bindings = BindingStore(store)
        self.nonce_counts = NonceCounts(store, nonces.ttl)

    async def __call__(self, message: WorkMessage) -> bytes:
        try:
            request = RegisterRequest.model_validate_json(message.body)
        except ValidationError as error:
            raise DeadLetter(f"not a RegisterRequest: {error.error_count()} errors") from None
        return (await self.answer(request)).to_bytes()

    async def answer(self, incoming: RegisterRequest) -> RegisterReply:
        """The response for one REGISTER; ``sip`` None when it cannot be answered (no Via)."""
        try:
            message = parse_message(incoming.sip)
            if not isinstance(message, Request):
                return RegisterReply(sip=None)
            async with asyncio.timeout(DEADLINE):
                return RegisterReply(sip=await self._register(message, incoming))
        except WrongCredentialsError as failed:
            failed_auth = FailedAuth(user=failed.user, realm=failed.realm)
            return RegisterReply(sip=error_response(incoming.sip, failed), failed_auth=failed_auth)
        except UNAVAILABLE_OR_LATE as error:
            # Nothing half-written: each write is one script, done whole or not at all; one
            # cut short by the deadline is unacknowledged, like a write whose answer was lost
            # (its nonce-count spent: the phone's retry is challenged again).
            self.log.warning(
                "REGISTER not answered: Redis unavailable",
                extra={"error": f"{type(error).__name__}: {error}", "source": incoming.source_host},
            )
            busy = SipError("Service Unavailable", 503, (("Retry-After", str(RETRY_AFTER)),))
            return RegisterReply(sip=error_response(incoming.sip, busy))
        except SipError as error:
            if error.status >= 403:
                self.log.info(
                    "REGISTER refused",
                    extra={
                        "status": error.status,
                        "reason": error.reason,
                        "source": incoming.source_host,
                    },
                )
            return RegisterReply(sip=error_response(incoming.sip, error))

    async def _register(self, request: Request, incoming: RegisterRequest) -> bytes:
        if request.method != "REGISTER":
            raise SipError("Method Not Allowed", 405, (("Allow", "REGISTER"),))
        request.validate()
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri):
            raise SipError("Unsupported URI Scheme", 416)
        aor = aor_of(to_uri)
        user, realm = str(to_uri.user), to_uri.host.lower()
        now = self.clock()
        credentials = credentials_for(request, realm, self.offer.for_realm(realm))
        if credentials is None:
            return self._challenge(request, realm, now)
        nonce = str(credentials.nonce)
        state = self.nonces.check(nonce, realm, now)
        if state is NonceState.INVALID:
            return self._challenge(request, realm, now)
        check_identity(credentials, request, user)
        count = nonce_count(credentials)
        if count is None:
            raise SipParseError("malformed digest nc")
        ha1, snapshot = await self._read(user, realm, credentials.algorithm, aor)
        verdict = judge(credentials, request, ha1, state)
        if verdict is Verdict.FORBIDDEN:
            raise WrongCredentialsError(user, realm)
        if verdict is Verdict.STALE:
            return self._challenge(request, realm, now, stale=True)
        claim = NonceClaim(self.nonce_counts.key(nonce), count, self.nonce_counts.keep)
        origin = Origin(
            incoming.source_host,
            incoming.source_port,
            incoming.transport,
            incoming.edge,
            incoming.edge_address,
            incoming.connection_id,
        )
        for _ in range(MAX_ATTEMPTS):
            live = snapshot.live(now)
            try:
                update = update_bindings(
                    request, aor, live, origin=origin, policy=self.policy, now=now
                )
            except SipError:
                # Refused; the nonce-count is still spent, so a replay is challenged.
                if not await self.nonce_counts.claim(nonce, count):
                    return self._replayed(request, realm, now, aor)
                raise
            if not update.changed:
                committed = await self.nonce_counts.claim(nonce, count)
                outcome = Commit.DONE if committed else Commit.REPLAYED
            else:
                outcome = await self.bindings.commit(snapshot, live, update.current, claim)
            if outcome is Commit.REPLAYED:
                return self._replayed(request, realm, now, aor)
            if outcome is Commit.DONE:
                self._announce(update)
                return ok_response(request, update, now, new_tag()).to_bytes()
            snapshot = await self.bindings.snapshot(aor)
        raise ConflictError(f"bindings of {aor} changed {MAX_ATTEMPTS} times in a row")

    async def _read(
        self, user: str, realm: str, algorithm: str, aor: str
    ) -> tuple[str | None, AorSnapshot]:
        """The subscriber's HA1 and the AoR's bindings, in one round trip."""
        source = ha1_source(self.store, user, realm, algorithm)
        pipe = self.store.redis.pipeline(transaction=False)
        if source is not None:
            pipe.hmget(source[0], [source[1], "enabled"])
        pipe.hgetall(self.bindings.key(aor))
        replies = await pipe.execute()
        ha1 = ha1_of(replies[0]) if source is not None else None
        return ha1, AorSnapshot(aor, replies[-1])

    def _replayed(self, request: Request, realm: str, now: float, aor: str) -> bytes:
        self.log.info("REGISTER with a replayed nonce-count", extra={"aor": aor})
        return self._challenge(request, realm, now)

    def _challenge(self, request: Request, realm: str, now: float, *, stale: bool = False) -> bytes:
        headers = challenge_headers(
            self.nonces, realm, now, self.offer.for_realm(realm), stale=stale
        )
        return make_response(request, 401, to_tag=new_tag(), headers=headers).to_bytes()

    def _announce(self, update: BindingUpdate) -> None:
        for binding in update.added:
            self.outbox.post(BindingAdded(binding=binding.location()))
        for binding in update.refreshed:
            self.outbox.post(BindingRefreshed(binding=binding.location()))
        for binding in update.removed:
            self.outbox.post(BindingRemoved(binding=binding.location(), cause="unregistered"))
