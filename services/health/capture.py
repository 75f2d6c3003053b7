"""The prober's OPTIONS and their answers mirrored to Homer, and the probes no answer explains.

Configured by the edge's variables (``CALLMESH_HEP_DESTINATIONS``, ``_CAPTURE_ID``,
``_PASSWORD``, ``_SKIP_METHODS``, ``_SAMPLE``, ``_QUEUE``, ``_LOG_EVENTS``), so one Homer
shows a gateway's probes beside its calls.  Every OPTIONS sent (retransmissions
too) and every response received is a HEP SIP packet correlated by its Call-ID,
with the addresses and ports it had on the wire.  A probe that ends with no
response (timed out, the connection refused, an unusable address) leaves no SIP
in Homer to say so: with ``CALLMESH_HEP_LOG_EVENTS`` it is also a HEP log packet
(``health.probe.failed``: the target, the error), correlated with its OPTIONS,
also when ``OPTIONS`` is among the skipped methods (keep-alives kept out, failures
still seen).  Answered probes need no log: their response is in the ladder.
Nothing here waits: the HEP sender only queues (`shared.hep.sender`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.hep.codec import ip_protocol
from shared.hep.mirror import HepMirror
from shared.sip.transport.base import Listener

FAILED = "health.probe.failed"


class ProbeCapture:
    """What one prober sends and receives, handed to a `HepMirror`."""

    def __init__(self, hep: HepMirror, clock: Callable[[], float] = time.time) -> None:
        self.hep = hep
        self._clock = clock

    def sent(
        self, data: bytes, call_id: str, local: Listener, destination: tuple[str, int]
    ) -> None:
        at = (local.host, local.port)
        protocol = ip_protocol(local.transport)
        self.hep.sip(data, self._clock(), protocol, at, destination, correlation=call_id)

    def received(self, data: bytes, call_id: str, source: tuple[str, int], local: Listener) -> None:
        at = (local.host, local.port)
        protocol = ip_protocol(local.transport)
        self.hep.sip(data, self._clock(), protocol, source, at, correlation=call_id)

    def failed(self, target: str, call_id: str, error: str, local: Listener) -> None:
        """A probe that got no response: as a log packet, when logs are asked for."""
        fields = {"event": FAILED, "target": target, "call_id": call_id, "error": error}
        self.hep.log(fields, self._clock(), (local.host, local.port), call_id)

    async def stop(self) -> None:
        await self.hep.sender.stop()
