"""What keeps the unit run a unit run: an unmarked test may not reach a broker or start SIPp.

A test that talks to RabbitMQ, Redis or PostgreSQL, or drives SIPp or Kamailio,
must be marked ``integration`` or ``wire`` (pyproject's markers) so that
``make test-unit`` (``-m "not integration and not wire"``) stays fast and runs
on a machine without them. Forgetting the marker would pass unnoticed where the
services happen to run; with this guard such a test fails wherever it runs,
naming what it reached. The guard wraps ``socket.socket.connect`` (asyncio's
connections, redis-py's and aio-pika's included, go through it) and
``subprocess.Popen`` (asyncio's subprocesses included) for the test's duration.
A connection made on a uvloop event loop goes through libuv instead and is not
seen; the tests run on asyncio's own loop (the one uvloop test talks to itself).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

BROKER_MARKERS = frozenset({"integration", "wire"})
POSTGRESQL_PORT = 5432
PROGRAMS = frozenset(
    {"sipp", "kamailio", "rtpengine", "redis-server", "rabbitmq-server", "psql", "dnsmasq"}
)
"""The programs only the integration and wire tests drive."""


class IsolationError(AssertionError):
    """An unmarked test reached a broker, a database or a wire-test program."""


def broker_ports(rabbitmq_url: str, redis_url: str) -> dict[int, str]:
    """The ports the tests' services listen on → their names."""
    return {
        urlsplit(rabbitmq_url).port or 5672: "RabbitMQ",
        urlsplit(redis_url).port or 6379: "Redis",
        POSTGRESQL_PORT: "PostgreSQL",
    }


@contextmanager
def isolated(ports: dict[int, str], report: Callable[[str], None]) -> Iterator[None]:
    """Within: connecting to ``ports`` or starting one of ``PROGRAMS`` raises and is reported.

    Raising stops the test where it strays; reporting fails it even if its code
    caught the error (a client retrying quietly, a task's exception unread).
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_popen_init = subprocess.Popen.__init__

    def refuse(what: str) -> IsolationError:
        message = f"{what}: mark the test integration or wire (see tests/isolation.py)"
        report(message)
        return IsolationError(message)

    def check_address(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            name = ports.get(address[1])
            if name is not None:
                raise refuse(f"an unmarked test connected to {name} at {address[0]}:{address[1]}")

    def connect(sock: socket.socket, address: Any) -> None:
        check_address(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check_address(sock, address)
        return real_connect_ex(sock, address)

    def popen_init(process: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        program = _program(args)
        if program in PROGRAMS:
            raise refuse(f"an unmarked test started {program}")
        real_popen_init(process, args, *rest, **options)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        subprocess.Popen.__init__ = real_popen_init  # type: ignore[method-assign]


def _program(args: Any) -> str:
    """The program's file name from Popen's first argument (a list, or a shell string)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        words = os.fsdecode(args).split()
    else:
        words = [os.fsdecode(arg) for arg in list(args)[:1]]
    return os.path.basename(words[0]) if words else ""
