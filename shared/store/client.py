"""The Redis client of a process: one server, or the primary the Sentinels name.

Why a retry bounded by time and not by count: while a primary fails over
(Sentinel's ``down-after-milliseconds`` plus its election, a few seconds) every
command fails at once with a refused connection, so a count of tries says
nothing about how long a caller waited. Each command (and each connect, which
asks the Sentinels again for the primary) is retried on a connection error
until ``wait`` seconds passed since its first failure, then the error is
raised: writes then fail clearly (SIP 503, HTTP 503) instead of hanging, and
no caller waits longer than it was told.

Why a pool that waits: a burst (a CPU-starved worker's backlog of INVITEs, a
registration storm) can want more connections at once than the pool holds; a
pool that refuses answered those calls 500 ("Too many connections") while a
connection was about to come free.  The pool now queues a command for a free
connection up to the same ``wait``, and only then reports Redis unavailable (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.store.urls import SentinelUrl, parse_redis_url

T = TypeVar("T")

BACKOFF_CAP = 0.25
"""Seconds at most between two tries: a promoted primary is found within this."""


class NotReplicatedError(RedisError):
    """Redis could not take a write as the deployment asks (e.g. no replica acknowledged it)."""


UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    NotReplicatedError,
)
"""Errors meaning "Redis is not there now" (answered 503, never 500): a cut or refused
connection, a timeout, a demoted primary still answering (READONLY), a write not replicated."""


class DeadlineRetry(Retry):
    """Retries on connection errors until ``wait`` seconds passed since the first failure."""

    def __init__(self, wait: float) -> None:
        super().__init__(
            ExponentialBackoff(cap=BACKOFF_CAP, base=0.02),
            retries=-1,
            supported_errors=(RedisConnectionError, RedisTimeoutError),
        )
        self.wait = wait

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        failures = 0
        while True:
            try:
                return await do()
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                await (fail(error, failures) if with_failure_count else fail(error))
                now = loop.time()
                deadline = now + self.wait if deadline is None else deadline
                if now >= deadline:
                    raise
                await asyncio.sleep(min(self._backoff.compute(failures), deadline - now))


class PrimaryConnection(SentinelManagedConnection):
    """A connection that asks the Sentinels for the primary each time it (re)connects.

    Why: redis-py (8.1) reconnects a dropped connection from its send path
    (``connect_check_health``), which skips ``SentinelManagedConnection.connect``
    and so dials the address it had, the dead primary's, until the caller gives
    up; found by ``tests/shared/store/test_client.py``.
    """

    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped


class WaitingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The Sentinel pool (follows the primary) that waits for a free connection."""


def redis_client(url: str, wait: float, **options: Any) -> aioredis.Redis:
    """A client of the Redis (or Sentinel-watched primary) at ``url``; see the module doc."""
    options = {"retry": DeadlineRetry(wait), "timeout": wait, **options}
    parsed = parse_redis_url(url)
    if isinstance(parsed, str):
        pool = BlockingConnectionPool.from_url(parsed, **options)
        return aioredis.Redis.from_pool(pool)
    return _primary(parsed, options)


def _primary(url: SentinelUrl, options: dict[str, Any]) -> aioredis.Redis:
    """The Sentinel-managed client: each new connection asks the Sentinels for the primary,
    and a connection finding a demoted primary (READONLY) is dropped, so a failover is
    followed by the next try."""
    timeout = options.get("socket_connect_timeout", 2)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        list(url.sentinels),
        min_other_sentinels=0,
        sentinel_kwargs={
            "password": url.sentinel_password,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        },
    )
    primary: aioredis.Redis = sentinel.master_for(
        url.service,
        db=url.db,
        username=url.username,
        password=url.password,
        connection_class=PrimaryConnection,
        connection_pool_class=WaitingSentinelPool,
        **options,
    )
    return primary
