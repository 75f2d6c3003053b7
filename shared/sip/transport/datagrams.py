"""A UDP socket's datagrams in bulk: a burst read in one go (`read_datagrams`), and what its
handling held sent in one go (`send_datagrams`).

Why a module of its own: the UDP endpoint reads every burst and flushes every held send
through these two functions, and the compiled build gives them in C (`_datagrams.c`:
`recvmmsg`, one system call for up to 16 datagrams and no exception to learn the socket is
empty; `sendmmsg`, one for up to 64), as aiohttp keeps its `_http_parser.pyx` beside
`http_parser.py`.  `read_each` and `send_each` are the same in Python, one system call per
datagram, which CALLMESH_NO_EXTENSIONS=1 (or no build) runs; one test suite
(`tests/shared/sip/transport/test_datagrams.py`) holds each pair to one answer.
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
Outgoing = tuple[bytes, tuple[str, int]]
"""A datagram to send and its destination's numeric host and port, as `sendto` takes them."""


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


def send_each(sock: socket.socket, held: list[Outgoing], start: int) -> int:
    """Send `held[start:]` from `sock` in order, one `sendto` each; the index of the first
    datagram not sent (`len(held)` when all were), at the first that raised.

    The caller sends that one again by `sendto` to learn (and log) why, and goes on after
    it: the C twin stops, unraised, at what it cannot send exactly as `sendto` would, which
    this one never does, and at what the kernel refuses, as this one does.  Never raises.
    """
    for index in range(max(start, 0), len(held)):
        data, address = held[index]
        try:
            sock.sendto(data, address)
        except Exception:  # the caller's own sendto of it raises this again, or sends it
            return index
    return len(held)


def _reader() -> Callable[[socket.socket, int], list[Datagram]]:
    """The C reader (`_datagrams.c`) if this process loaded the compiled build."""
    try:
        from shared.sip.transport._datagrams import read_datagrams
    except ImportError:
        return read_each
    return read_datagrams


def _sender() -> Callable[[socket.socket, list[Outgoing], int], int]:
    """The C sender (`_datagrams.c`) if this process loaded the compiled build."""
    try:
        from shared.sip.transport._datagrams import send_datagrams
    except ImportError:
        return send_each
    return send_datagrams


read_datagrams: Final = _reader()
"""At most `limit` datagrams waiting on a socket (`read_each`, or the same in C)."""
send_datagrams: Final = _sender()
"""Send held datagrams from their index on; the index of the first not sent (`send_each`,
or the same in C by `sendmmsg`)."""
