"""The transport tests time datagrams by the kernel's stamps, so stamping is on throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shared.sip.transport.datagrams import read_datagrams
from tests.shared.sip.transport.support import bound

STAMPING_ON_WITHIN = 10.0
"""Seconds Linux may take to turn stamping on (the deferred work it schedules when a first
socket asks for stamps); a loaded machine takes hundreds of milliseconds."""


@pytest.fixture(scope="package", autouse=True)
def kernel_stamping_on() -> Iterator[None]:
    """Linux stamps datagrams on arrival only once a deferred work item has run after the
    first socket asked for stamps (`net_enable_timestamp`), and turns it off again the same
    way after the last one closed; until then a datagram is stamped when it is read, as if
    it had waited for nothing.  A stamping socket held open, its own datagram seen stamped
    before it was read, keeps arrival stamps on for the package's tests."""
    with bound() as holder:
        deadline = time.monotonic() + STAMPING_ON_WITHIN
        while True:
            sent = time.time()
            holder.sendto(b"stamp", holder.getsockname())
            time.sleep(0.02)
            [(_, _, _, stamp)] = read_datagrams(holder, 1)
            if stamp - sent < 0.01:
                break
            assert time.monotonic() < deadline, "Linux never stamped a datagram on arrival"
        yield
