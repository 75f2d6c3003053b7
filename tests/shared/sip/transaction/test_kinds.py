"""A transaction's kind by `isinstance`, asked in any order (the compiled build's too)."""

from __future__ import annotations

import itertools

from shared.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)


def test_each_kind_is_a_client_or_a_server_whatever_was_asked_before() -> None:
    """Every order of the questions: under mypyc an ABC's subclasses shared one subclass
    cache, and the first answer decided the later ones."""
    truth = {
        (InviteClientTransaction, ClientTransaction): True,
        (NonInviteClientTransaction, ClientTransaction): True,
        (InviteServerTransaction, ServerTransaction): True,
        (NonInviteServerTransaction, ServerTransaction): True,
        (InviteClientTransaction, ServerTransaction): False,
        (NonInviteClientTransaction, ServerTransaction): False,
        (InviteServerTransaction, ClientTransaction): False,
        (NonInviteServerTransaction, ClientTransaction): False,
    }
    for order in itertools.islice(itertools.permutations(truth), 0, 40_320, 997):
        assert {pair: issubclass(*pair) for pair in order} == truth
