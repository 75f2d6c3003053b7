"""At most one failure report per target and interval; the rest merged into a count.

Why: a gateway that stops answering under load fails every call sent to it,
and a report per failure (thousands a second at full rate) costs the edge a
publish each and floods the health service, which needs one to act.  The
first failure of a target in a window is reported at once; the others only
raise a count, sent with the window's last failure once the window is over
(`flush`), so the health service still learns how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts.edge import TargetFailed

REPORT_INTERVAL = 1.0


@dataclass(slots=True)
class _Window:
    ends: float
    held: int = 0
    latest: TargetFailed | None = None


class FailureReports:
    """Which `TargetFailed` events to publish now; pure, the caller passes its clock."""

    def __init__(self, interval: float = REPORT_INTERVAL) -> None:
        self.interval = interval
        self._windows: dict[tuple[str, str, str], _Window] = {}

    def offer(self, event: TargetFailed, now: float) -> TargetFailed | None:
        """`event` itself if it opens a window for its target, None if held back."""
        key = (event.routing_key, event.address, event.target)
        window = self._windows.get(key)
        if window is not None and now < window.ends:
            window.held += 1
            window.latest = event
            return None
        self._windows[key] = _Window(now + self.interval)
        if window is not None and window.held:  # not flushed yet: carry its count
            return event.model_copy(update={"merged": window.held})
        return event

    def flush(self, now: float) -> list[TargetFailed]:
        """Close the windows over by `now`; the latest held-back failure of each, with
        `merged` set so that the report stands for all of the window's held-back ones."""
        due: list[TargetFailed] = []
        for key, window in list(self._windows.items()):
            if now < window.ends:
                continue
            del self._windows[key]
            if window.latest is not None:
                due.append(window.latest.model_copy(update={"merged": window.held - 1}))
        return due
