"""A real NAT for wire tests: a phone's network namespace behind a router namespace that
masquerades it, the router's public side a veth pair to this host.

    host (root namespace)        router namespace              phone namespace
    <public>.1/30 ── veth ── <public>.2/30  [nft masquerade]  192.168.77.1/24 ── veth ── .2/24

`public` is a /30 of 198.18.0.0/15 (the benchmarking range: never routed,
never this machine's own) picked per network, so two tests never share
addresses.  The phone's packets leave the router from `<public>.2` with the
source port rewritten at random (as a home router's or a carrier NAT's
often is), so the host sees a private Via and Contact arriving from an
address and port nobody wrote in the message.  The host has no route to the
phone's network: only the NAT's mappings reach it.

Creating one needs root, `ip` (iproute2) and `nft` (nftables): a missing one
raises (the test fails, it does not skip).  Everything is deleted on the way
out, whatever happened (deleting the namespaces deletes their veth ends).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PHONE_HOST = "192.168.77.2"
LAN_ROUTER = "192.168.77.1"
_ATTEMPTS = 20


@dataclass(frozen=True)
class NatNetwork:
    phone_namespace: str
    router_namespace: str
    host_address: str
    """This host's end of the public link: where a service the phone reaches must listen."""
    nat_address: str
    """The router's public address: where the phone's packets come from."""
    phone_address: str = PHONE_HOST

    def in_phone(self, *argv: str) -> list[str]:
        """`argv` run inside the phone's namespace."""
        return ["ip", "netns", "exec", self.phone_namespace, *argv]


def run(*argv: str) -> None:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {completed.stderr.strip() or completed.returncode}")


@contextmanager
def natted_network() -> Iterator[NatNetwork]:
    """A phone namespace behind a masquerading router namespace; deleted on the way out."""
    suffix = os.urandom(4).hex()
    router, phone, host_veth = f"cmr{suffix}", f"cmp{suffix}", f"cmh{suffix}"
    host_address, nat_address = _free_link()
    try:
        run("ip", "netns", "add", router)
        run("ip", "netns", "add", phone)
        run("ip", "link", "add", host_veth, "type", "veth", "peer", "name", "pub", "netns", router)
        run("ip", "addr", "add", f"{host_address}/30", "dev", host_veth)
        run("ip", "link", "set", host_veth, "up")
        in_router = ("ip", "netns", "exec", router)
        in_phone = ("ip", "netns", "exec", phone)
        veth = ("type", "veth", "peer", "name", "eth0", "netns", phone)
        run(*in_router, "ip", "link", "add", "lan", *veth)
        run(*in_router, "ip", "addr", "add", f"{nat_address}/30", "dev", "pub")
        run(*in_router, "ip", "addr", "add", f"{LAN_ROUTER}/24", "dev", "lan")
        for link in ("lo", "pub", "lan"):
            run(*in_router, "ip", "link", "set", link, "up")
        run(*in_router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run(*in_router, "nft", "add table ip nat")
        run(*in_router, "nft", "add chain ip nat out { type nat hook postrouting priority 100 ; }")
        run(*in_router, "nft", 'add rule ip nat out oifname "pub" masquerade random')
        run(*in_phone, "ip", "addr", "add", f"{PHONE_HOST}/24", "dev", "eth0")
        for link in ("lo", "eth0"):
            run(*in_phone, "ip", "link", "set", link, "up")
        run(*in_phone, "ip", "route", "add", "default", "via", LAN_ROUTER)
        yield NatNetwork(phone, router, host_address, nat_address)
    finally:
        for namespace in (phone, router):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_veth], capture_output=True, check=False)


def _free_link() -> tuple[str, str]:
    """This host's and the router's addresses on a /30 of 198.18.0.0/15 no interface has."""
    for _ in range(_ATTEMPTS):
        raw = os.urandom(3)
        prefix, base = f"198.{18 + raw[0] % 2}.{raw[1]}", 4 * (raw[2] % 64)
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "to", f"{prefix}.{base}/30"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip # one option a row
        if not shown.stdout.strip():
            return f"{prefix}.{base + 1}", f"{prefix}.{base + 2}"
    raise RuntimeError(f"no free /30 in 198.18.0.0/15 after {_ATTEMPTS} tries")
