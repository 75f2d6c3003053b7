"""TLS peers for the edge's wire tests: a user agent that answers calls over one TLS stream.

SIPp as installed (Debian's) has no TLS, so the TLS side of these tests is a
small user agent on Python's `ssl`: as a gateway it listens (optionally asking
for a client certificate), as a phone it is the client of the edge's TLS
listener. It answers INVITE with 200, OPTIONS and BYE with 200, and keeps what
it received.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import socket
import ssl
import threading
import time
from pathlib import Path

from deploy.labs.certificates import CertAuthority, Issued
from tests.services.edge.support import LOOPBACK


def edge_certificates(workdir: Path) -> tuple[CertAuthority, Issued, dict[str, str]]:
    """A test CA, the edge's certificate from it, and the edge's `CALLMESH_TLS_*` settings."""
    ca = CertAuthority(workdir / "pki")
    edge = ca.issue("edge")
    settings = {"tls_cert": str(edge.cert), "tls_key": str(edge.key), "tls_ca": str(ca.cert)}
    return ca, edge, settings


def headers_of(message: bytes, name: str) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0]
    prefix = name.lower().encode() + b":"
    return [line for line in head.split(b"\r\n")[1:] if line.lower().startswith(prefix)]


def answer(request: bytes, status: int, reason: str, contact: str, to_tag: str) -> bytes:
    """A response echoing the request's Vias, Record-Routes, From, Call-ID and CSeq."""
    lines = [f"SIP/2.0 {status} {reason}".encode()]
    for name in ("via", "record-route", "from"):
        lines += headers_of(request, name)
    for to in headers_of(request, "to"):
        lines.append(to if b";tag=" in to else to + f";tag={to_tag}".encode())
    lines += headers_of(request, "call-id") + headers_of(request, "cseq")
    lines += [f"Contact: <{contact}>".encode(), b"Content-Length: 0", b"", b""]
    return b"\r\n".join(lines)


class Stream:
    """SIP messages over one connected (TLS) socket, framed by Content-Length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def receive(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                length = 0
                for line in self._buffer[:end].lower().split(b"\r\n"):
                    if line.startswith((b"content-length:", b"l:")):
                        length = int(line.split(b":", 1)[1])
                total = end + 4 + length
                if len(self._buffer) >= total:
                    message, self._buffer = self._buffer[:total], self._buffer[total:]
                    return message.lstrip(b"\r\n") or self.receive()
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("closed")
            self._buffer += chunk

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class Answerer:
    """Answers each request arriving on a stream until it closes (a thread per stream)."""

    def __init__(self, contact: str) -> None:
        self.contact = contact
        self.requests: list[bytes] = []
        self.done = threading.Event()
        self._threads: list[threading.Thread] = []

    def methods(self) -> list[str]:
        return [request.split(b" ", 1)[0].decode() for request in self.requests]

    def serve(self, stream: Stream) -> None:
        thread = threading.Thread(target=self._serve, args=(stream,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self, stream: Stream) -> None:
        tag = secrets.token_hex(4)
        try:
            while True:
                message = stream.receive()
                if message.startswith(b"SIP/2.0"):
                    continue
                self.requests.append(message)
                method = message.split(b" ", 1)[0]
                if method == b"ACK":
                    continue
                stream.send(answer(message, 200, "OK", self.contact, tag))
                if method == b"BYE":
                    self.done.set()
        except (OSError, ConnectionError):
            return


class TlsGateway(Answerer):
    """A TLS server on loopback answering calls (a carrier's SBC), in threads."""

    def __init__(self, issued: Issued, client_ca: CertAuthority | None = None) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self.listener.getsockname()[1])
        super().__init__(f"sip:gw@{LOOPBACK}:{self.port};transport=tls")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(issued.cert), str(issued.key))
        if client_ca is not None:
            self.context.load_verify_locations(str(client_ca.cert))
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.handshakes = 0
        self.client_subjects: list[object] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                raw.settimeout(10)
                secure = self.context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            self.handshakes += 1
            peer = secure.getpeercert()
            self.client_subjects.append(peer.get("subject") if peer else None)
            self.serve(Stream(secure))

    def close(self) -> None:
        self.listener.close()


def tls_client(port: int, ca: CertAuthority) -> ssl.SSLSocket:
    """A TLS connection to the edge at `port`, verifying its certificate against `ca`."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    raw = socket.create_connection((LOOPBACK, port), timeout=10)
    return context.wrap_socket(raw, server_hostname=LOOPBACK)


class SlowLink:
    """A TCP relay on loopback whose replies arrive `delay` seconds late (a long-distance
    link): what the peer behind it sends reaches the client in order, each chunk `delay`
    after it was sent.  Over loopback a TLS 1.3 server's refusal of our certificate lands
    before the first request is written; across this link it lands after, as on a WAN."""

    def __init__(self, target_port: int, delay: float = 0.3) -> None:
        self.delay = delay
        self.target_port = target_port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection((LOOPBACK, self.target_port), timeout=10)
            late: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._hold, args=(server, late), daemon=True).start()
            threading.Thread(target=self._release, args=(late, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65535):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _hold(self, source: socket.socket, late: queue.Queue[tuple[float, bytes]]) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65535):
                late.put((time.monotonic() + self.delay, chunk))
        late.put((time.monotonic() + self.delay, b""))

    @staticmethod
    def _release(late: queue.Queue[tuple[float, bytes]], sink: socket.socket) -> None:
        while True:
            due, chunk = late.get()
            time.sleep(max(0.0, due - time.monotonic()))
            if not chunk:
                break
            with contextlib.suppress(OSError):
                sink.sendall(chunk)
        sink.close()

    def close(self) -> None:
        self.listener.close()
