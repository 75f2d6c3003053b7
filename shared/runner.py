"""Run one or several services in this process: the entry point of every ``__main__``.

The all-in-one (``python -m services``) and the single-service processes share
this code, so they differ only in the list of services they pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from shared import event_loop
from shared.api import create_app
from shared.bus import Bus
from shared.bus.factory import make_bus
from shared.bus.memory import MemoryBroker
from shared.logs import configure_logging
from shared.service import ReadinessCheck, Runtime, Service
from shared.settings import ConfigError, Settings
from shared.store import Store, open_store

log = logging.getLogger("callmesh.runner")


def bus_check(bus: Bus) -> ReadinessCheck:
    async def check() -> str | None:
        return None if bus.connected else "RabbitMQ unreachable"

    return check


def store_check(store: Store) -> ReadinessCheck:
    async def check() -> str | None:
        return None if await store.ping() else "Redis unreachable"

    return check


class Process:
    """The services of one process, their shared store, their buses and the HTTP app."""

    def __init__(self, settings: Settings, services: Sequence[type[Service]]) -> None:
        self.settings = settings
        self.service_types = services
        self.services: list[Service] = []
        self.buses: list[Bus] = []
        self.store: Store | None = None

    async def start(self) -> None:
        settings = self.settings
        self.store = await open_store(settings)
        broker = None if settings.rabbitmq_url else MemoryBroker()
        checks: list[tuple[str, ReadinessCheck]] = [("redis", store_check(self.store))]
        for service_type in self.service_types:
            bus = make_bus(settings, service_type.name, broker)
            await bus.start()
            self.buses.append(bus)
            checks.append((f"rabbitmq:{service_type.name}", bus_check(bus)))
            runtime = Runtime(
                settings,
                bus,
                self.store,
                logging.getLogger(f"callmesh.{service_type.name}"),
                colocated=tuple(each.name for each in self.service_types),
            )
            self.services.append(service_type(runtime))
        for service in self.services:
            await service.start()
            checks.extend(service.runtime.readiness)
        self.checks = checks

    async def stop(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                await service.stop()
        for bus in self.buses:
            with contextlib.suppress(Exception):
                await bus.close()
        if self.store is not None:
            await self.store.close()

    def http_app(self) -> FastAPI:
        """The HTTP API of every service started here, with the probes."""
        routers = [router for service in self.services for router in service.routers()]
        title = f"Callmesh {'+'.join(s.name for s in self.services)}"
        token = self.settings.api_token
        secret = token.get_secret_value() if token is not None else None
        sources = [
            source for service in self.services for source in service.runtime.metrics_sources
        ]
        return create_app(
            title,
            routers,
            self.checks,
            secret,
            sources,
            metrics_public=self.settings.metrics_public,
            max_body_size=self.settings.api_max_body,
        )

    def http_server(self) -> uvicorn.Server:
        host, port = self.settings.http_address
        config = uvicorn.Config(
            self.http_app(),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        return _Server(config)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: the runner owns SIGINT/SIGTERM.

    uvicorn re-raises a captured SIGTERM when ``serve`` returns, which would kill
    the process before the services stop (and before the embedded store writes
    its snapshot).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings, services: Sequence[type[Service]]) -> None:
    process = Process(settings, services)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await process.start()
        log.info(
            "started",
            extra={"services": [s.name for s in services], "http": settings.http_listen},
        )
        server = process.http_server()
        serving = asyncio.create_task(server.serve())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait((serving, stop), return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
        stop.cancel()
    finally:
        await process.stop()
        log.info("stopped")


def main(services: Sequence[type[Service]], *, embedded_allowed: bool) -> None:
    """Parse settings, refuse what cannot be served, then run until SIGINT/SIGTERM."""
    name = services[0].name if len(services) == 1 else "all"
    try:
        settings = Settings()
        settings.check_api_exposure()
        if not embedded_allowed and not (settings.rabbitmq_url and settings.redis_url):
            raise ConfigError(
                f"python -m services.{name} needs CALLMESH_RABBITMQ_URL and CALLMESH_REDIS_URL; "
                "the in-process bus and embedded store exist only in the all-in-one "
                "(python -m services)"
            )
    except (ConfigError, ValidationError) as error:
        print(f"callmesh: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(name, settings.instance, settings.log_level)
    try:
        event_loop.run(serve(settings, services))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        log.error("cannot start", extra={"error": str(error)})
        raise SystemExit(1) from None
