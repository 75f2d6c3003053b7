"""The routing table every proxy under test is given, in proxy-neutral form.

Each proxy translates it into its own provisioning (db_text files, HTTP API,
...), so the benchmark compares the proxies on identical routing work.
"""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Gateway:
    id: int
    host: str
    port: int
    description: str


@dataclass(frozen=True, slots=True)
class Rule:
    """drouting semantics: longest prefix in the group wins; gateways in order."""

    id: int
    group: int
    prefix: str
    priority: int
    gateway_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    gateways: tuple[Gateway, ...]
    rules: tuple[Rule, ...]


def seed_table(port_a: int, port_b: int) -> RoutingTable:
    """The project's seed table, with both PSTN gateways on loopback ports."""
    return RoutingTable(
        gateways=(
            Gateway(1, LOOPBACK, port_a, "PSTN 1"),
            Gateway(2, LOOPBACK, port_b, "PSTN 2"),
        ),
        rules=(
            Rule(1, 0, "1407", 0, (1, 2)),
            Rule(2, 0, "44", 0, (2,)),
            Rule(3, 0, "33", 0, (1, 2)),
            Rule(4, 0, "91", 0, (2, 1)),
        ),
    )
