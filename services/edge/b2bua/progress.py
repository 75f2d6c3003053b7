"""The steps of the B2BUA's calls, noted for its adapter's call events (sans-IO).

Why apart from the relaying: the engine only notes what happened (a ring, leg B's final
answer, the answer, a failure, a CANCEL, a BYE); the adapter turns the notes into
``edge.call.…`` events under the caller's Call-ID (`runtime.b2bua_events`).
"""

from __future__ import annotations

from services.edge.b2bua.pair import Pair, Progress, Relay, Side, Step
from shared.sip.message import Response


class ProgressNotes:
    """The steps noted since the adapter last emptied `progress`."""

    __slots__ = ("progress",)

    def __init__(self) -> None:
        self.progress: list[Progress] = []

    def response(self, relay: Relay, response: Response) -> None:
        """Leg B's ringing, and its final answer once (not a 2xx's retransmissions)."""
        status = response.status
        if status in (180, 183) and not relay.cancelled:
            self.note(relay.pair, "ringing", status)
        elif status >= 200 and relay.answer is None and relay.ack is None:
            self.note(relay.pair, "branch", status, response.reason, sent=relay.sent)

    def note(
        self,
        pair: Pair,
        step: Step,
        status: int = 0,
        reason: str = "",
        *,
        sent: float = 0.0,
        by_edge: bool = False,
        side: Side | None = None,
    ) -> None:
        self.progress.append(Progress(pair, step, status, reason, sent, by_edge, side))
