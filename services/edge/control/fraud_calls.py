"""Which live calls a fraud block ends, picked from the accounting service's open calls (sans-IO).

A block (``fraud.threshold.…`` with ``block`` set) holds an account — every call of it —
or the account's calls to one prefix.  The account is ``peer:<id>`` for a peer's calls,
else ``subscriber:<user@host>`` of the caller's From (`policy.fraud.account_of`).  The
open calls are asked by the record column that names the account (``peer``, or
``caller``: the From's user part, normalised, which other hosts' users of that name share),
and every call listed is checked here against the whole account and the prefix, so that
nobody else's call is ever hung up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.edge.policy.fraud import subscriber_account
from shared.contracts.accounting import normalise_party
from shared.contracts.fraud import FraudThreshold
from shared.sip.errors import SipError
from shared.sip.uri import parse_uri


@dataclass(frozen=True, slots=True)
class BlockedCalls:
    """The calls one block holds: of `account`, to numbers starting with `prefix` (None: all)."""

    account: str
    prefix: str | None

    @classmethod
    def of(cls, event: FraudThreshold) -> BlockedCalls | None:
        """The calls `event`'s block holds; None when the event set no block."""
        if event.block is None or event.blocked is None:
            return None
        return cls(event.account, event.prefix if event.blocked == "prefix" else None)

    def query(self) -> dict[str, str] | None:
        """The ``/v1/open-calls`` filter that lists the account's calls (and maybe others');
        None for an account no record column can name."""
        kind, _, name = self.account.partition(":")
        if kind == "peer" and name:
            return {"peer": name}
        if kind == "subscriber":
            user = normalise_party(name.rpartition("@")[0] if "@" in name else name)
            return {"caller": user} if user else None
        return None

    def holds(self, call: dict[str, Any]) -> bool:
        """Whether an open call as ``/v1/open-calls`` lists it is one of the block's."""
        callee = call.get("callee")
        if self.prefix is not None and not (
            isinstance(callee, str) and callee.startswith(self.prefix)
        ):
            return False
        kind, _, name = self.account.partition(":")
        if kind == "peer":
            return call.get("peer") == name
        if call.get("peer") is not None:  # a peer's call is the peer's account, not its From's
            return False
        caller = call.get("caller")
        if not isinstance(caller, str):
            return False
        try:
            return subscriber_account(parse_uri(caller)) == self.account
        except (SipError, ValueError):
            return False
