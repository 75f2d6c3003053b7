"""A HEP collector on loopback, a tshark capture of the loopback, and what they read.

The collector is a UDP socket in the test decoding every packet with
`shared.hep.codec.decode`; the capture is tshark (`-i lo`) writing a pcap the
test reads back with tshark's own SIP dissector, and with sngrep's HEPv3
decoder (tshark 4.0 has no HEP dissector): ``sngrep -E`` turns the captured
HEP packets back into SIP datagrams in a pcap, which tshark dissects.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.hep.codec import HepError, HepPacket, decode, packet_length
from tests.services.edge.support import LOOPBACK, Sipp

MARKER = b"callmesh-marker"


@dataclass
class Collector:
    """Every HEP packet that reaches ``port``, decoded; bytes that do not decode are kept apart."""

    sock: socket.socket
    port: int
    packets: list[HepPacket] = field(default_factory=list)
    malformed: list[bytes] = field(default_factory=list)
    markers: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def open(cls) -> Collector:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.bind((LOOPBACK, 0))
        sock.settimeout(0.1)
        collector = cls(sock, sock.getsockname()[1])
        collector._thread = threading.Thread(target=collector._run, daemon=True)
        collector._thread.start()
        return collector

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if data == MARKER:
                self.markers += 1
                continue
            try:
                self.packets.append(decode(data))
            except HepError:
                self.malformed.append(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()

    def mark(self) -> None:
        """Send the marker datagram (the capture's end) and wait until it arrived here."""
        seen = self.markers
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(MARKER, (LOOPBACK, self.port))
        wait_for(lambda: self.markers > seen, "the marker datagram at the collector")


def count_messages(one: Sipp) -> int:
    """The messages a SIPp instance logged as sent or received (retransmissions too)."""
    return len(re.findall(r"(?:UDP|TCP) message (?:sent|received)", one.messages()))


def call_ids(caller: Sipp) -> list[str]:
    """The Call-IDs a SIPp caller used, in order."""
    return list(dict.fromkeys(re.findall(r"\nCall-ID: (\S+)", caller.messages())))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class LoopbackCapture:
    """tshark on ``lo`` writing a pcap of the UDP ports given, printing a line per packet."""

    process: subprocess.Popen[str]
    path: Path
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, path: Path, ports: list[int]) -> LoopbackCapture:
        bpf = " or ".join(f"udp port {port}" for port in ports)
        process = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", bpf, "-w", str(path), "-P", "-l"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        capture = cls(process, path)
        threading.Thread(target=capture._read, daemon=True).start()
        wait_for(lambda: any("Capture started" in line for line in capture.lines), "tshark")
        return capture

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def stop_after_marker(self, collector: Collector) -> None:
        """Mark the end, wait until tshark printed the marker's packet, then stop it."""
        collector.mark()
        length = f"Len={len(MARKER)}"
        wait_for(lambda: any(length in line for line in self.lines), "the marker in tshark")
        self.process.send_signal(signal.SIGINT)
        self.process.wait(20)


def tshark_fields(pcap: Path, fields: list[str], *args: str) -> list[list[str]]:
    """One row per packet of ``pcap`` (after ``args``' filters): the fields asked for."""
    argv = ["tshark", "-r", str(pcap), *args, "-T", "fields", "-E", "separator=\t"]
    for name in fields:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def tshark_filter(pcap: Path, display_filter: str, out: Path) -> None:
    """The packets of ``pcap`` that pass ``display_filter``, written to ``out``."""
    argv = ["tshark", "-r", str(pcap), "-Y", display_filter, "-w", str(out)]
    subprocess.run(argv, capture_output=True, timeout=120, check=True)


def sngrep_decapsulate(pcap: Path, out: Path) -> None:
    """sngrep's HEPv3 decoder: the SIP inside the pcap's HEP packets, as a pcap of SIP."""
    subprocess.run(
        ["sngrep", "-N", "-q", "-I", str(pcap), "-E", "-O", str(out)],
        capture_output=True,
        timeout=120,
        check=True,
    )


@dataclass
class TcpCollector:
    """A HEP collector over TCP on ``port``: each connection's stream cut into packets by
    their length field (`packet_length`) and decoded; it can be closed and opened again."""

    port: int
    packets: list[HepPacket] = field(default_factory=list)
    malformed: list[bytes] = field(default_factory=list)
    connections: int = 0
    server: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def open(cls, port: int = 0) -> TcpCollector:
        collector = cls(port)
        collector.listen()
        return collector

    def listen(self) -> None:
        server = socket.create_server((LOOPBACK, self.port), reuse_port=False)
        server.settimeout(0.1)
        self.server, self.port = server, server.getsockname()[1]
        self._stop = threading.Event()
        self._spawn(self._accept, server)

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket) -> None:
        thread = threading.Thread(target=target, args=(sock,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            connection.settimeout(0.1)
            self._spawn(self._read, connection)

    def _read(self, connection: socket.socket) -> None:
        buffer = b""
        with connection:
            while not self._stop.is_set():
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                try:
                    while (size := packet_length(buffer)) is not None and len(buffer) >= size:
                        self.packets.append(decode(buffer[:size]))
                        buffer = buffer[size:]
                except HepError:
                    self.malformed.append(buffer)
                    return

    def close(self) -> None:
        """Stop listening and drop every connection (the edge sees its connection closed)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        if self.server is not None:
            self.server.close()
            self.server = None
