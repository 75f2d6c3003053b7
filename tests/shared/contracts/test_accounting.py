"""The call record's contract: how a party's address is normalised for ``?caller=``."""

from __future__ import annotations

import pytest

from shared.contracts.accounting import normalise_party


@pytest.mark.parametrize(
    ("address", "normalised"),
    [
        ("sip:+1 (555) 010-0000@example.com;user=phone", "+15550100000"),
        ("<sips:alice@example.com>", "alice"),
        ("tel:+33.1.23", "+33123"),
        ("1000", "1000"),
    ],
)
def test_normalise_party(address: str, normalised: str) -> None:
    assert normalise_party(address) == normalised
