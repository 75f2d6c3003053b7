"""Which digest algorithms a realm's challenges offer: MD5 by default, SHA-256 where asked.

Many deployed phones give up on a 401/407 as soon as one of its challenges
names an algorithm they do not know, even when another one offers MD5:
Debian's baresip 1.0 (libre) answers "Function not implemented" to
``algorithm=SHA-256`` whichever comes first.  So, as OpenSIPS and Kamailio
do, every realm is challenged with ``CALLMESH_DIGEST_ALGORITHMS`` (default
``MD5``), and a domain whose phones all know RFC 8760 gets its own list from
``CALLMESH_DIGEST_DOMAIN_ALGORITHMS`` (``example.com=SHA-256,MD5;...``).

Per domain, never per subscriber: a challenge is sent before anyone has
authenticated, so one that depended on the user would tell a scanner
(`svwar`) that the user exists.  Only offered algorithms are accepted, so a
domain offering SHA-256 alone cannot be answered with MD5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

ALGORITHMS: Final = ("MD5", "SHA-256")
"""What a subscriber has an HA1 for (the registrar stores one per algorithm)."""


@dataclass(frozen=True, slots=True)
class DigestOffer:
    default: tuple[str, ...] = ("MD5",)
    domains: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Lower-case domain → its algorithms, most preferred first."""

    def for_realm(self, realm: str) -> tuple[str, ...]:
        """The challenges' algorithms for ``realm`` (a domain, lower-case), in order."""
        return self.domains.get(realm, self.default)

    @classmethod
    def parse(cls, default: str, domains: str = "") -> DigestOffer:
        """From the settings' text; ``ValueError`` naming what is wrong."""
        by_domain: dict[str, tuple[str, ...]] = {}
        for item in filter(None, (part.strip() for part in domains.split(";"))):
            domain, equals, algorithms = item.partition("=")
            domain = domain.strip().lower()
            if not equals or not domain:
                raise ValueError(f"expected domain=ALGORITHM[,ALGORITHM] in {item!r}")
            if domain in by_domain:
                raise ValueError(f"domain {domain!r} is given twice")
            by_domain[domain] = parse_algorithms(algorithms)
        return cls(parse_algorithms(default), MappingProxyType(by_domain))


def parse_algorithms(text: str) -> tuple[str, ...]:
    """``SHA-256,MD5`` → ``("SHA-256", "MD5")``: known, distinct, at least one."""
    found = tuple(part.strip().upper() for part in text.split(","))
    for algorithm in found:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown digest algorithm {algorithm!r} (MD5 or SHA-256)")
    if len(set(found)) != len(found):
        raise ValueError(f"an algorithm is given twice in {text!r}")
    return found
