"""`CALLMESH_DNS_SERVERS`: the DNS servers to ask, `host[:port]`, comma-separated."""

from __future__ import annotations

import ipaddress


def parse_servers(text: str) -> list[tuple[str, int]]:
    """`address[:port]` items, comma-separated (`[v6]:port` for IPv6 with a port): addresses,
    since a name would need a DNS server to find the DNS server."""
    servers = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else "53"
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, "53"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad DNS server {item!r} (address[:port])")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"DNS server {item!r} is not an IP address") from None
        servers.append((host, int(port)))
    return servers
