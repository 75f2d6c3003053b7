"""A UDP socket's waiting datagrams, read in one go: `read_datagrams`.

Why a module of its own: the UDP endpoint reads every burst through this one function,
and the compiled build gives it in C (`_datagrams.c`, by `recvmmsg`: one system call for up
to 16 datagrams, and no exception to learn the socket is empty), as aiohttp keeps its
`_http_parser.pyx` beside `http_parser.py`.  `read_each` is the same in Python, one
`recvmsg` per datagram, which CALLMESH_NO_EXTENSIONS=1 (or no build) runs; one test suite
(`tests/shared/sip/transport/test_datagrams.py`) holds the two to one answer.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Final

RECEIVE_SIZE: Final = 65536
"""Bytes asked of each read: any datagram whole."""
SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux's value (asm-generic); Python's `socket` does not name it."""
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_SIZE: Final = socket.CMSG_SPACE(_TIMESPEC.size)

Datagram = tuple[bytes, str, int, float]
"""Its bytes, its source's host and port (`""` and 0 for a source without an IP address),
and the kernel's receive stamp in wall-clock seconds (SO_TIMESTAMPNS; 0.0 when the socket
gives none)."""


def read_each(sock: socket.socket, limit: int) -> list[Datagram]:
    """At most `limit` datagrams waiting on `sock`, in order; `[]` when none waits.

    An error of the kernel is raised when it comes before any datagram, and otherwise
    ends the burst unraised (what was read is handled; on a UDP socket such an error is
    an ICMP report of an earlier send, which the transaction timers handle anyway).
    """
    burst: list[Datagram] = []
    for _ in range(limit):
        try:
            data, ancillary, _flags, source = sock.recvmsg(RECEIVE_SIZE, _ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            if burst:
                break
            raise
        stamp = 0.0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(value)
                stamp = seconds + nanoseconds * 1e-9
                break
        if isinstance(source, tuple):  # IPv4: 2 items, IPv6: 4
            burst.append((data, source[0], source[1], stamp))
        else:  # a Unix socket's path, or no address at all
            burst.append((data, "", 0, stamp))
    return burst


def _reader() -> Callable[[socket.socket, int], list[Datagram]]:
    """The C reader (`_datagrams.c`) if this process loaded the compiled build."""
    try:
        from shared.sip.transport._datagrams import read_datagrams
    except ImportError:
        return read_each
    return read_datagrams


read_datagrams: Final = _reader()
"""At most `limit` datagrams waiting on a socket (`read_each`, or the same in C)."""
