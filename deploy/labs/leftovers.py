"""The test queues earlier runs left on the shared RabbitMQ: swept before a run, expired after.

Why: every work queue is a quorum queue, and RabbitMQ reserves a file handle for each queue
it hosts out of a budget set by its open-file limit (a stock Debian broker: 1,024 files,
927 handles). Past the budget it still takes TCP connections but never answers them, and a
restart never finishes recovering its queues. Tests killed half-way, and queues no test
deletes, add up over a day's work on one machine: enough to wedge the broker the next run
finds there (two CI runs failed so, every bus reporting "RabbitMQ unreachable ... last try:
TimeoutError" and the CLI "unable to perform an operation on node"). So before a run:

- a policy has the broker delete an unused test queue ten minutes after its last use
  (no consumer, no declare, no get), so that leftovers never pile up again;
- the unused test queues there now are deleted;
- a broker already wedged by them is revived: its handle budget is raised (the queues hold
  no open file each: it is a reservation), the leftovers swept, the budget put back.

Only a broker this machine runs is touched (``rabbitmqctl`` talks to the local node), and
only queues named as tests and benchmarks name theirs (``test-…``, ``bench-…``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika

from deploy.labs.namespaces import RABBITMQ_URL

PATTERN = r"^(test-[0-9a-f]{12}|bench-[0-9a-z-]+)\."
"""The queues of a test's namespace (``test-<12 hex>.routing.commands``, tests/conftest.py) or a
benchmark's (``bench-<hex or set-up>.…``); a staging platform's ``test-lab.…`` is not one."""
POLICY = "callmesh-test-leftovers"
EXPIRES_MS = 600_000
"""An unused test queue lives ten minutes: no test leaves a queue it still needs unused so
long, and a day's leftovers stay far below any broker's handle budget."""
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


@dataclass
class Broker:
    """The local RabbitMQ node as its CLI reaches it (``rabbitmqctl`` plus any ``-n`` node)."""

    url: str = RABBITMQ_URL
    ctl: Sequence[str] = ("rabbitmqctl",)
    env: dict[str, str] | None = None

    def run(self, *args: str, timeout: float = 60.0) -> str:
        done = subprocess.run(
            [*self.ctl, "-q", *args], capture_output=True, text=True, env=self.env,
            timeout=timeout, check=False,
        )  # fmt: skip # one option a row
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args[0]}: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def eval(self, expression: str) -> str:
        return self.run("eval", expression).strip()

    def answers(self, within: float = 10.0) -> bool:
        """Whether the broker answers AMQP's protocol header with a frame within `within` s
        (a wedged broker accepts the TCP connection and says nothing)."""
        address = urlsplit(self.url.partition(",")[0])
        try:
            with socket.create_connection(
                (address.hostname or "127.0.0.1", address.port or 5672), timeout=within
            ) as connection:
                connection.sendall(AMQP_HEADER)
                return connection.recv(1) == b"\x01"  # a method frame: Connection.Start
        except OSError:
            return False

    def unused(self, pattern: str) -> list[str]:
        """Names of the queues matching `pattern` that have no consumer now."""
        listing = self.run("list_queues", "--no-table-headers", "name", "consumers")
        matches = re.compile(pattern).match
        rows = (line.rsplit("\t", 1) for line in listing.splitlines() if "\t" in line)
        return [name for name, consumers in rows if matches(name) and consumers.strip() == "0"]

    def expire(self, pattern: str, policy: str = POLICY) -> None:
        """The broker deletes a queue matching `pattern` once unused for EXPIRES_MS."""
        definition = json.dumps({"expires": EXPIRES_MS})
        self.run("set_policy", "--apply-to", "queues", policy, pattern, definition)


async def delete(url: str, names: Sequence[str]) -> None:
    connection = await aio_pika.connect(url.partition(",")[0], timeout=30)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


def revive(broker: Broker, pattern: str) -> tuple[str, int]:
    """A broker that hosts more queues than its handle budget: raise the budget above them,
    delete the unused test queues, put the budget back. Says what it found, and how many
    queues it deleted."""
    queues = int(broker.eval("length(rabbit_amqqueue:list())."))
    used = int(broker.eval("proplists:get_value(total_used, file_handle_cache:info())."))
    limit = int(broker.eval("file_handle_cache:get_limit()."))
    broker.eval(f"file_handle_cache:set_limit({used + limit}).")
    try:
        if not any(broker.answers(within=5.0) for _ in range(24)):  # two minutes
            raise RuntimeError(f"no AMQP answer even with {used + limit} file handles")
        names = broker.unused(pattern)
        asyncio.run(delete(broker.url, names))
    finally:
        broker.eval(f"file_handle_cache:set_limit({limit}).")
    return f"revived (its {queues} queues held {used} file handles of {limit}); ", len(names)


def sweep(broker: Broker, pattern: str = PATTERN, policy: str = POLICY) -> str:
    """The policy set and the unused leftovers deleted; a broker wedged by them revived first.
    Returns the line to print."""
    wedged, removed = ("", 0) if broker.answers() else revive(broker, pattern)
    broker.expire(pattern, policy)
    names = broker.unused(pattern)
    asyncio.run(delete(broker.url, names))
    removed += len(names)
    return (
        f"RabbitMQ: {wedged}{removed} leftover test queue(s) removed; an unused test queue "
        f"expires after {EXPIRES_MS // 60_000} min (policy {policy})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=RABBITMQ_URL)
    args = parser.parse_args(argv)
    host = urlsplit(args.url.partition(",")[0]).hostname or ""
    if host not in {"127.0.0.1", "localhost", "::1"}:
        print(f"make test: RabbitMQ at {host} is not this machine's: its test queues are left")
        return 0
    try:
        print(f"make test: {sweep(Broker(args.url))}")
    except (RuntimeError, OSError, subprocess.TimeoutExpired, aio_pika.AMQPException) as exc:
        print(f"make test: RabbitMQ's leftover test queues: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
