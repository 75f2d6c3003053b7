"""The edge's rtpengine: carries out the proxy core's `Media` actions with the ng client.

One `RtpengineClient` per edge process over `CALLMESH_RTPENGINE`'s instances,
pinged every `CALLMESH_RTPENGINE_PING_INTERVAL`; `CALLMESH_RTPENGINE_FLAGS`
are added to every offer and answer.  A command that fails (no live
instance, no reply after the retries, rtpengine's error) logs one line and
gives None: the core decides (503, or the call carries on unrelayed); a
failed delete is counted here, nothing waits for it.  A new call's offer
that got no reply is deleted on its instance in the background (the client's
``new_call``): rtpengine may have taken it, and no BYE will end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.edge import metrics
from services.edge.proxy.actions import Media
from shared.rtpengine.bencode import Encodable
from shared.rtpengine.client import RtpengineClient, RtpengineUnavailableError
from shared.rtpengine.flags import parse_flags
from shared.rtpengine.instances import parse_instances
from shared.rtpengine.protocol import NgCommandError
from shared.settings import Settings

log = logging.getLogger("callmesh.edge")


class MediaRunner:
    """The rtpengine instances of one edge process and the options sent with each call."""

    def __init__(self, client: RtpengineClient, flags: dict[str, Encodable], ping: float) -> None:
        self.client = client
        self.flags = flags
        self._ping = ping
        self._probe: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaRunner | None:
        """None without `CALLMESH_RTPENGINE`: no relay at all."""
        instances = parse_instances(settings.rtpengine)
        if not instances:
            return None
        client = RtpengineClient(
            instances, timeout=settings.rtpengine_timeout, retries=settings.rtpengine_retries
        )
        return cls(client, parse_flags(settings.rtpengine_flags), settings.rtpengine_ping_interval)

    async def start(self) -> None:
        await self.client.start()
        self._probe = asyncio.get_running_loop().create_task(self.client.probe(self._ping))

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        self.client.close()

    async def run(self, action: Media) -> bytes | None:
        """rtpengine's SDP for an offer or answer (b"" for a delete); None when it failed."""
        params: dict[str, Encodable] = {}
        if action.command != "delete":
            params = {**self.flags, "from-tag": action.from_tag, "sdp": action.sdp}
            if action.to_tag is not None:
                params["to-tag"] = action.to_tag
        try:
            if action.command == "offer":  # a new call's has no to-tag (a late offer's has)
                new_call = action.to_tag is None
                reply = await self.client.offer(action.call_id, params, new_call=new_call)
            else:
                reply = await self.client.command(action.command, action.call_id, params)
        except (RtpengineUnavailableError, NgCommandError) as error:
            log.warning("rtpengine %s of %s failed: %s", action.command, action.call_id, error)
            if action.command == "delete":
                metrics.MEDIA_FAILURES["delete", "ignored"] += 1
            return None
        sdp = reply.body.get("sdp")
        if action.command == "delete":
            return b""
        if not isinstance(sdp, bytes):
            log.warning("rtpengine %s of %s: no SDP in the reply", action.command, action.call_id)
            return None
        return sdp
