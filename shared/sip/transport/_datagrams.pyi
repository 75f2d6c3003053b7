"""A UDP socket's datagrams by `recvmmsg` and `sendmmsg` (`_datagrams.c`), present only in the
compiled build."""

import socket

def read_datagrams(sock: socket.socket, limit: int, /) -> list[tuple[bytes, str, int, float]]:
    """At most `limit` datagrams waiting on `sock`, exactly as `datagrams.read_each` reads
    them: (data, host, port, the kernel's stamp in wall-clock seconds or 0.0)."""

def send_datagrams(
    sock: socket.socket, held: list[tuple[bytes, tuple[str, int]]], start: int, /
) -> int:
    """Send `held[start:]` from `sock` in order, as `datagrams.send_each` does; the index of
    the first datagram not sent."""
