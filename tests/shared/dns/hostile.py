"""A hostile DNS server for the tests: real UDP and TCP sockets on loopback, crafted answers.

dnsmasq (`dnsmasq.py`) serves what a sane zone holds; an attacker who owns a
zone the edge resolves (a Request-URI's domain, a gateway's) answers what it
likes: NAPTR fields that are not text, thousands of SRV targets. This server
answers each question with what `answer` returns for it (None: NXDOMAIN), too
big for UDP → truncated (TC) there and whole over TCP, as a real server does.
It counts the questions asked.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from deploy.labs.ports import free_port

Answer = Callable[[str, str], list[dns.rrset.RRset] | None]
"""(name without its trailing dot, type) → the answer section, or None for NXDOMAIN."""


@dataclass
class HostileDns:
    answer: Answer
    port: int = 0
    asked: list[tuple[str, str]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def respond(self, wire: bytes, max_size: int) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, rtype = question.name.to_text().rstrip("."), dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rtype))
        found = self.answer(name, rtype)
        if found is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.extend(found)
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC
            return truncated.to_wire()


def _serve_udp(server: HostileDns, sock: socket.socket) -> None:
    while not server.stopped.is_set():
        try:
            wire, peer = sock.recvfrom(65535)
        except TimeoutError:
            continue
        sock.sendto(server.respond(wire, 1232), peer)


def _serve_tcp(server: HostileDns, listening: socket.socket) -> None:
    while not server.stopped.is_set():
        try:
            connection, _ = listening.accept()
        except TimeoutError:
            continue
        with connection:
            connection.settimeout(5)
            size = int.from_bytes(connection.recv(2), "big")
            wire = b""
            while len(wire) < size:
                wire += connection.recv(size - len(wire))
            reply = server.respond(wire, 65535)
            connection.sendall(len(reply).to_bytes(2, "big") + reply)


def _bound_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP socket and a listening TCP socket on one free loopback port: `free_port`'s, out
    of the kernel's ephemeral range (the UDP port the kernel picked could be in use over TCP
    by a connection of a test running beside this one: CI once met EADDRINUSE so)."""
    port = free_port()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(64)
    return udp, tcp


@contextmanager
def hostile_dns(answer: Answer) -> Iterator[HostileDns]:
    """The server on a free loopback port (UDP and TCP alike), stopped on exit."""
    udp, tcp = _bound_pair()
    port = udp.getsockname()[1]
    for sock in (udp, tcp):
        sock.settimeout(0.1)  # to see `stopped`
    server = HostileDns(answer, port)
    threads = [
        threading.Thread(target=_serve_udp, args=(server, udp), daemon=True),
        threading.Thread(target=_serve_tcp, args=(server, tcp), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield server
    finally:
        server.stopped.set()
        for thread in threads:
            thread.join(timeout=2)
        udp.close()
        tcp.close()
