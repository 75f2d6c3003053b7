"""A UDP socket's waiting datagrams by `recvmmsg` (`_datagrams.c`), present only in the compiled
build."""

import socket

def read_datagrams(sock: socket.socket, limit: int, /) -> list[tuple[bytes, str, int, float]]:
    """At most `limit` datagrams waiting on `sock`, exactly as `datagrams.read_each` reads
    them: (data, host, port, the kernel's stamp in wall-clock seconds or 0.0)."""
