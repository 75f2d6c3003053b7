"""Fraud screening of a new call, before it is routed: which account, which rules, the verdict.

The rules are the routing table's (``fraud_rule`` records, kept in the edge's
index by the table's events); the counts and blocks are shared by every edge
in Redis (:mod:`shared.fraud.store`), asked once per new call that a rule
watches (a `Screen`, one script). A call of a blocked account, or to a
blocked prefix of it, is refused here with ``403 Forbidden`` and a ``Reason``
naming the block; a call whose verdict is unknown (Redis away) goes on.
"""

from __future__ import annotations

from typing import Final

from services.edge.policy.routing import TableView
from shared.fraud.rules import FraudQuery, FraudVerdict
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.uri import SipUri, Uri

REFUSED_STATUS: Final = 403
_UNSAFE = str.maketrans("", "", '"\\\r\n')


class FraudScreen:
    """Builds each new call's fraud query from the table's rules and applies its verdict."""

    __slots__ = ("table",)

    def __init__(self, table: TableView) -> None:
        self.table = table

    def query(self, request: Request, peer: str | None, number: str) -> FraudQuery | None:
        rules = self.table.index.fraud
        if not len(rules) or request.method != "INVITE" or request.to_tag is not None:
            return None
        return rules.query(request.call_id, account_of(request, peer), number)

    def apply(self, query: FraudQuery, verdict: FraudVerdict | None) -> None:
        """Raises the refusal of a blocked call; anything else goes on to routing."""
        if verdict is None or verdict.block_id is None:
            return
        what = f"{verdict.blocked} {query.account}".translate(_UNSAFE)
        reason = f'SIP;cause=403;text="fraud block {verdict.block_id}: {what}"'
        raise SipError(
            f"Forbidden (fraud block {verdict.block_id})", REFUSED_STATUS, (("Reason", reason),)
        )


def account_of(request: Request, peer: str | None) -> str:
    """``peer:<id>`` for a peer's call, else ``subscriber:<user@host>`` of its From."""
    if peer is not None:
        return f"peer:{peer}"
    return subscriber_account(request.from_.uri)


def subscriber_account(uri: Uri) -> str:
    """The fraud account of a caller's From URI that is no peer's: ``subscriber:<user@host>``."""
    if isinstance(uri, SipUri):
        return f"subscriber:{uri.user or ''}@{uri.host.lower()}"
    return f"subscriber:{uri}"
