"""Which rtpengine instance holds a call: the configured list and the per-call order.

``CALLMESH_RTPENGINE`` lists instances as ``udp:host:port`` with an optional
``=weight`` (``udp:10.0.0.5:2223=2,udp:10.0.0.6:2223``). A call's instances
are ranked by weighted rendezvous hashing of its Call-ID: every edge, after a
restart too, ranks them the same way without storing or sharing anything; an
instance added or removed moves only the calls it wins or held; an instance
of weight 2 wins about twice the calls of one of weight 1.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from shared.settings import split_host_port

MAX_WEIGHT = 1000


@dataclass(frozen=True, slots=True)
class Instance:
    """One rtpengine's ng control address."""

    host: str
    port: int
    weight: int = 1

    @property
    def name(self) -> str:
        """``udp:host:port``: its label in metrics and logs, and its hashing key."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp:{host}:{self.port}"


def parse_instances(text: str) -> tuple[Instance, ...]:
    """The instances of ``CALLMESH_RTPENGINE`` (none for empty text); ``ValueError`` says why."""
    found: list[Instance] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        transport, _, rest = item.partition(":")
        if transport != "udp":
            raise ValueError(f"rtpengine instance {item!r}: only udp:host:port is spoken")
        address, _, weight_text = rest.partition("=")
        host, port = split_host_port(address)
        weight = int(weight_text) if weight_text.isdigit() else 1 if not weight_text else -1
        if not host or not 1 <= weight <= MAX_WEIGHT or port == 0:
            raise ValueError(
                f"rtpengine instance {item!r}: expected udp:host:port[=1..{MAX_WEIGHT}]"
            )
        instance = Instance(host, port, weight)
        if any(other.name == instance.name for other in found):
            raise ValueError(f"rtpengine instance {instance.name} is listed twice")
        found.append(instance)
    return tuple(found)


def _score(call_id: str, instance: Instance) -> float:
    digest = hashlib.blake2b(
        f"{call_id}\0{instance.name}".encode(errors="surrogateescape"), digest_size=8
    ).digest()
    unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)  # in (0, 1)
    return -instance.weight / math.log(unit)


def ranked(call_id: str, instances: tuple[Instance, ...]) -> list[Instance]:
    """``instances`` in the order a call tries them: the same on every edge."""
    return sorted(instances, key=lambda instance: _score(call_id, instance), reverse=True)
