"""Which gateway URIs are reached over TLS (where `tls` options may be set)."""

from __future__ import annotations

import pytest

from shared.routing_table.gateway_tls import names_tls


@pytest.mark.parametrize(
    "address, tls",
    [
        ("sips:gw.example.net", True),
        ("SIPS:gw.example.net:5061", True),
        ("sip:10.0.0.1;transport=tls", True),
        ("sip:10.0.0.1;lr;TRANSPORT=TLS?x=y", True),
        ("sip:10.0.0.1;transport=tcp", False),
        ("sip:10.0.0.1;transport=tlsx", False),
        ("sip:10.0.0.1?transport=tls", False),
        ("sip:transport=tls@10.0.0.1", False),
    ],
)
def test_sips_or_transport_tls_names_tls(address: str, tls: bool) -> None:
    assert names_tls(address) is tls
