"""RFC 3263 §4 from the cache: which transport, port and addresses a SIP URI's host leads to.

`locate` reads only the cache; when a record it needs is not there it raises
`NeedRecords` naming every record missing at that step (all SRV targets'
addresses at once, say), so the resolver can fetch them together and call
it again. The steps, for a URI host that is not an IP address:

- transport given and port given, or port given: A/AAAA of the host
  (transport: the given one, else UDP, or TLS for `sips:`);
- transport given, no port: SRV for that transport (`_sip._udp`,
  `_sip._tcp`, `_sips._tcp`), else A/AAAA on the transport's default port;
- neither: NAPTR, keeping the records whose service (`SIP+D2U`,
  `SIP+D2T`, `SIPS+D2T`, …) names a transport we speak (only `SIPS+` ones
  for `sips:`), in (order, preference); the first whose SRV has targets
  wins. Without NAPTR records: SRV for each transport we speak (UDP, then
  TCP, then TLS; TLS only for `sips:`); without those: A/AAAA on port 5060
  (5061 for TLS).

SRV targets come in RFC 2782 order (`records.order_srv`); each address of a
target is one `DnsTarget`, A before AAAA.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Final

from shared.dns.cache import DnsCache, Entry, Record, RecordKey, record_key
from shared.dns.records import Naptr, Srv, order_naptr, order_srv
from shared.sip.transport.destination import SUPPORTED_TRANSPORTS
from shared.sip.uri import SipUri

NAPTR_SERVICES: Final = {
    "SIP+D2U": "udp",
    "SIP+D2T": "tcp",
    "SIPS+D2T": "tls",
    "SIP+D2S": "sctp",
    "SIPS+D2S": "tls-sctp",
    "SIP+D2W": "ws",
    "SIPS+D2W": "wss",
}
SRV_PREFIXES: Final = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
PLAIN_ORDER: Final = ("udp", "tcp", "tls")
"""The transports tried by SRV when a name has no NAPTR records (RFC 3263 §4.1 leaves the
order to us: UDP first, as every SIP element must speak it)."""


@dataclass(frozen=True, slots=True)
class NameSpec:
    """What a SIP URI says about its next hop: host, explicit port and transport, `sips:`."""

    host: str
    port: int | None = None
    transport: str | None = None
    secure: bool = False


@dataclass(frozen=True, slots=True)
class DnsTarget:
    """One address to send to, and the SRV target (or URI host) it came from."""

    address: str
    port: int
    transport: str
    name: str
    """The host name the address is of: an SRV record's target, or the URI's host."""
    priority: int = 0
    """The SRV priority (0 without SRV): higher values are tried after the lower ones failed."""

    @property
    def label(self) -> str:
        """The target as health and logs name it: `transport:name:port`, as listen addresses are
        written (no `/` or `;`, so it needs no escaping in a URL path)."""
        return f"{self.transport}:{self.name}:{self.port}"


@dataclass(frozen=True, slots=True)
class Located:
    targets: list[DnsTarget]
    reason: str = ""
    """Why there are none (which record was missing), for the log and the dry run."""
    by_srv: tuple[tuple[Srv, tuple[DnsTarget, ...]], ...] = ()
    """From SRV records: each with its targets, so a caller can draw the weights again."""


class NeedRecords(Exception):  # noqa: N818 - a question for the resolver, not a failure
    """The cache lacks these records (all needed at the same step): fetch them, then retry."""

    def __init__(self, keys: list[RecordKey]) -> None:
        super().__init__(keys)
        self.keys = keys


def name_spec(uri: SipUri) -> NameSpec | None:
    """What RFC 3263 needs from a next hop's URI (its `maddr`, else its host); None for an
    IP address, which needs no DNS."""
    host = (uri.param("maddr") or uri.host).strip("[]")
    if is_ip(host):
        return None
    transport = (uri.param("transport") or "").lower() or None
    return NameSpec(host, uri.port, transport, uri.scheme == "sips")


_IP_LITERALS: Final[dict[str, bool]] = {}


def is_ip(host: str) -> bool:
    """Memoised: the edge asks it for every UDP send, and peers are few compared with messages."""
    known = _IP_LITERALS.get(host)
    if known is None:
        try:
            ipaddress.ip_address(host)
            known = True
        except ValueError:
            known = False
        if len(_IP_LITERALS) > 65536:
            _IP_LITERALS.clear()
        _IP_LITERALS[host] = known
    return known


def default_port(transport: str) -> int:
    return 5061 if transport in ("tls", "wss", "tls-sctp") else 5060


class _Reader:
    """Cache reads that collect what is missing instead of stopping at the first."""

    def __init__(self, cache: DnsCache, now: float, read: list[Entry] | None) -> None:
        self.cache = cache
        self.now = now
        self.missing: list[RecordKey] = []
        self.read = read

    def records(self, name: str, rtype: str) -> tuple[Record, ...] | None:
        key = record_key(name, rtype)
        entry: Entry | None = self.cache.get(key, self.now)
        if entry is None:
            self.missing.append(key)
            return None
        if self.read is not None:
            self.read.append(entry)
        return entry.records

    def check(self) -> None:
        if self.missing:
            raise NeedRecords(self.missing)


def locate(
    cache: DnsCache,
    spec: NameSpec,
    now: float,
    rng: random.Random,
    transports: frozenset[str] = SUPPORTED_TRANSPORTS,
    *,
    read: list[Entry] | None = None,
) -> Located:
    """The targets of `spec` in the order to try them; `NeedRecords` if the cache lacks some.
    `read`, if given, gets every cache entry the answer came from."""
    host = spec.host.rstrip(".")
    secure_transport = "tls" if "tls" in transports else "tcp"
    if is_ip(host):
        literal = spec.transport or (secure_transport if spec.secure else "udp")
        return Located([DnsTarget(host, spec.port or default_port(literal), literal, host)])
    reader = _Reader(cache, now, read)
    transport = spec.transport
    if transport is None and spec.port is None:
        naptrs = reader.records(host, "NAPTR")
        reader.check()
        choices = _naptr_choices(naptrs or (), spec.secure, transports)
        if choices:
            for choice, name in choices:
                srvs = reader.records(name, "SRV")
                reader.check()
                if srvs:
                    return _from_srv(reader, srvs, choice, rng)
            return Located([], f"no SRV records behind the NAPTR records of {host}")
        plain = [t for t in PLAIN_ORDER if t in transports and (t == "tls") == spec.secure]
        if spec.secure and not plain:
            plain = ["tls"]
        for choice in plain:  # the first with records wins: later ones are not needed then
            srvs = reader.records(f"{SRV_PREFIXES[choice]}.{host}", "SRV")
            if srvs and not reader.missing:
                return _from_srv(reader, srvs, _label(choice, secure_transport), rng)
        reader.check()  # what is missing, asked for together
    elif transport is not None and spec.port is None and transport in SRV_PREFIXES:
        srvs = reader.records(f"{SRV_PREFIXES[transport]}.{host}", "SRV")
        reader.check()
        if srvs:
            return _from_srv(reader, srvs, transport, rng)
    chosen = transport or (secure_transport if spec.secure else "udp")
    port = spec.port or default_port(chosen)
    addresses = _addresses(reader, host)
    reader.check()
    targets = [DnsTarget(address, port, chosen, host) for address in addresses]
    if targets:
        return Located(targets)
    entry = cache.peek(record_key(host, "A"))
    why = entry.reason if entry is not None and entry.reason else "no A/AAAA records"
    return Located([], f"{host}: {why}")


def _label(transport: str, secure_transport: str) -> str:
    return secure_transport if transport == "tls" else transport


def _naptr_choices(
    records: tuple[Record, ...], secure: bool, transports: frozenset[str]
) -> list[tuple[str, str]]:
    """(transport, SRV name) of the usable NAPTR records, most preferred first."""
    naptrs = tuple(record for record in records if isinstance(record, Naptr))
    chosen = []
    for record in order_naptr(naptrs):
        transport = NAPTR_SERVICES.get(record.service.upper())
        if (
            transport is None
            or transport not in transports
            or record.flags.lower() != "s"
            or (secure and not record.service.upper().startswith("SIPS+"))
            or record.replacement in (".", "")  # a regexp record (RFC 3403): not SIP's
        ):
            continue
        chosen.append((transport, record.replacement.rstrip(".")))
    return chosen


def _addresses(reader: _Reader, name: str) -> list[str]:
    found: list[str] = []
    for rtype in ("A", "AAAA"):
        records = reader.records(name, rtype)
        if records:
            found.extend(str(record) for record in records)
    return found


def _from_srv(
    reader: _Reader, records: tuple[Record, ...], transport: str, rng: random.Random
) -> Located:
    srvs = order_srv(tuple(record for record in records if isinstance(record, Srv)), rng)
    per_target = [(srv, _addresses(reader, srv.target.rstrip("."))) for srv in srvs]
    reader.check()
    by_srv = tuple(
        (
            srv,
            tuple(
                DnsTarget(
                    address, srv.port, transport, srv.target.rstrip(".").lower(), srv.priority
                )
                for address in addresses
            ),
        )
        for srv, addresses in per_target
    )
    targets = [target for _srv, found in by_srv for target in found]
    if targets:
        return Located(targets, by_srv=by_srv)
    if not srvs:
        return Located([], "the SRV records say the service is not available")
    return Located([], f"no A/AAAA records for the SRV targets ({srvs[0].target}…)")
