"""Which Request-URIs dial a number."""

from __future__ import annotations

import pytest

from services.edge.proxy.routes import dialled_number
from shared.sip.uri import parse_uri


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:14075551234@example.com", "14075551234"),
        ("sip:+442071234567@10.0.0.1;user=phone", "+442071234567"),
        ("tel:+1-407-555-1234", "+14075551234"),
        ("sip:alice@example.com", None),
        ("sip:example.com", None),
        ("sip:+@example.com", None),
        ("sip:a14075551234@example.com", None),  # only a leading + may precede the digits
        ("sip:١٢٣@example.com", None),
    ],
)
def test_dialled_number(uri: str, number: str | None) -> None:
    assert dialled_number(parse_uri(uri)) == number
