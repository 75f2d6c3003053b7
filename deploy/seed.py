"""``python -m deploy.seed``: a small routing table in which every kind of call ends differently.

Why: a call record is only as good as the calls it was proven on.  This
table gives each outcome the accounting service must tell apart its own
number, so a demo, or the accounting wire tests, can place them all through
one edge with SIPp playing the gateways (loopback, ports from ``--port`` up):

| number (any suffix) | rule | gateways, in order | the gateway's part | the call |
| --- | --- | --- | --- | --- |
| ``9001…`` | ``seed-answer`` | ``seed-answer`` | answers | answered |
| ``9002…`` | ``seed-busy`` | ``seed-busy`` | 486 Busy Here | busy |
| ``9003…`` | ``seed-failover`` | ``seed-down``, ``seed-backup`` | 503; answers | answered (2nd) |
| ``9004…`` | ``seed-ring`` | ``seed-ring`` | rings until cancelled | cancelled |
| ``9009…`` | none | | | unrouted: the edge's 404 |

It writes through the routing service's HTTP API (``--api``, with
``CALLMESH_API_TOKEN`` if set), as an operator would, and prints the table
version reached.  Writing it again changes nothing but the version.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass

import httpx

DEFAULT_API = "http://127.0.0.1:8080"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5081


@dataclass(frozen=True)
class SeedRoute:
    """One outcome: the number to dial for it, and its rule's gateways (none: unrouted)."""

    outcome: str
    number: str
    gateways: tuple[str, ...]

    @property
    def rule(self) -> str | None:
        return f"seed-{self.outcome}" if self.gateways else None


ROUTES = (
    SeedRoute("answer", "90015550100", ("seed-answer",)),
    SeedRoute("busy", "90025550100", ("seed-busy",)),
    SeedRoute("failover", "90035550100", ("seed-down", "seed-backup")),
    SeedRoute("ring", "90045550100", ("seed-ring",)),
    SeedRoute("unrouted", "90095550100", ()),
)
GATEWAYS = ("seed-answer", "seed-busy", "seed-down", "seed-backup", "seed-ring")
"""In port order: ``seed-answer`` on ``--port``, ``seed-busy`` on the next, and so on."""
PREFIX_LENGTH = 4


def gateway_ports(first_port: int) -> dict[str, int]:
    return {gateway: first_port + offset for offset, gateway in enumerate(GATEWAYS)}


def seed_records(host: str, first_port: int) -> dict[str, dict[str, object]]:
    """The API paths under ``/v1`` and their bodies, gateways first (rules name them)."""
    records: dict[str, dict[str, object]] = {
        f"gateways/{gateway}": {
            "address": f"sip:{host}:{port}",
            "description": f"seed table: {gateway.removeprefix('seed-')}",
        }
        for gateway, port in gateway_ports(first_port).items()
    }
    for route in ROUTES:
        if route.rule is not None:
            records[f"rules/{route.rule}"] = {
                "group": "0",
                "prefix": route.number[:PREFIX_LENGTH],
                "priority": 0,
                "gateways": list(route.gateways),
                "description": f"seed table: {route.outcome}",
            }
    return records


async def seed(client: httpx.AsyncClient, host: str, first_port: int) -> int:
    """Write the seed table through ``client`` (the routing API); the table version reached."""
    version = 0
    for path, body in seed_records(host, first_port).items():
        reply = await client.put(f"/v1/{path}", json=body)
        reply.raise_for_status()
        version = max(version, int(reply.json()["version"]))
    return version


async def _main(api: str, host: str, first_port: int) -> int:
    token = os.environ.get("CALLMESH_API_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=10.0) as client:
        return await seed(client, host, first_port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.seed", description=__doc__)
    parser.add_argument("--api", default=DEFAULT_API, help="the routing API's base URL")
    parser.add_argument("--host", default=DEFAULT_HOST, help="the gateways' address")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the first gateway's port")
    args = parser.parse_args(argv)
    try:
        version = asyncio.run(_main(args.api, args.host, args.port))
    except httpx.HTTPError as error:
        print(f"seed: the routing API at {args.api} failed: {error}", file=sys.stderr)
        return 1
    ports = gateway_ports(args.port)
    print(f"seed table written: version {version}")
    for route in ROUTES:
        targets = ", ".join(f"{gw} ({args.host}:{ports[gw]})" for gw in route.gateways)
        print(f"  {route.number}: {route.outcome} -> {targets or 'no rule (404)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
