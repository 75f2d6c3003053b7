"""CANCEL (RFC 3261 §9.2, §16.10): answer it, and stop what its INVITE started.

`Cancelling` sits in `Proxy`'s class chain between `CallRecords` and `Forking`:
a CANCEL matching a parked INVITE (still waiting for a lookup) ends it with a
487 here; one matching a forwarding stops the branches that have had a
provisional answer, and `Forking` sends the CANCEL of a branch that gets its
first provisional later, or that a 2xx elsewhere made unwanted.
"""

from __future__ import annotations

from services.edge.proxy.actions import Action, Send
from services.edge.proxy.call_records import CallRecords
from services.edge.proxy.forwarding import Branch
from shared.sip.message import Request
from shared.sip.transaction import ServerTransaction


class Cancelling(CallRecords):
    """Answers a CANCEL and cancels the branches of its INVITE."""

    def _cancel(
        self, cancel: Request, server: ServerTransaction, now: float, actions: list[Action]
    ) -> None:
        invite = self.table.match_cancel(cancel)
        if invite is None:
            self._answer(server, 481, None, now, actions)
            return
        self._answer(server, 200, None, now, actions)
        parked = self._parked.pop(invite, None)
        if parked is not None:  # still waiting for a lookup
            self._answer(invite, 487, None, now, actions)
            self._publish_cancelled(None, parked, now, actions)
            return
        forwarding = self._forwardings.get(invite)
        if forwarding is None or forwarding.done:
            return
        forwarding.cancelled = True
        self._publish_cancelled(forwarding, None, now, actions)
        forwarding.hops.clear()
        for branch in forwarding.branches:
            if branch.provisional and not branch.abandoned:
                self._send_cancel(branch, now, actions)
        # Before any provisional the CANCEL waits for one (§9.1); the failover
        # timer ends the wait with a 487 if none comes.

    def _send_cancel(self, branch: Branch, now: float, actions: list[Action]) -> None:
        if branch.cancel_sent or branch.client.request.method != "INVITE":
            return
        branch.cancel_sent = True
        cancel = branch.cancel_request()
        _client, events = self.table.start_client(cancel, branch.client.destination, now)
        for event in events:
            if isinstance(event, Send):  # a CANCEL that cannot leave needs no answer
                actions.append(Send(event.data, event.destination))
