"""A request held as bytes (`Transaction.hold_request_as_bytes`) reads back as it was, whatever
the torture: every RFC 4475 and RFC 5118 request the reader takes, edited as the proxy edits
one (a Via stamped, a Via and a Record-Route added), comes back from its bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.sip.errors import SipParseError
from shared.sip.message import Request, parse_message
from shared.sip.transaction import TransactionTable
from tests.shared.sip.torture import DATA
from tests.shared.sip.transaction.support import SETTINGS, UDP_PEER, response

TORTURE = sorted([*DATA.glob("rfc4475/*.dat"), *DATA.glob("rfc5118/crlf/*.dat")])


def edited_as_by_a_proxy(path: Path) -> Request | None:
    """The torture message as the proxy's server transaction and branch would hold it, or
    None when the reader refuses it (then no transaction ever holds it)."""
    try:
        message = parse_message(path.read_bytes())
        if not isinstance(message, Request) or message.method == "ACK":
            return None  # an ACK has no client transaction
        message.stamp_top_via("198.51.100.9", 5099)
        message.prepend_via("SIP/2.0/UDP 192.0.2.200:5060;branch=z9hG4bKcm-held")
        message.add_header("Record-Route", "<sip:192.0.2.200;lr>", first=True)
    except SipParseError:
        return None
    return message


EDITED = [path for path in TORTURE if edited_as_by_a_proxy(path) is not None]


@pytest.mark.parametrize("path", EDITED, ids=lambda path: path.stem)
def test_a_torture_request_held_as_bytes_reads_back_as_it_was(path: Path) -> None:
    request = edited_as_by_a_proxy(path)
    assert request is not None
    table = TransactionTable(SETTINGS)
    client, _ = table.start_client(request, UDP_PEER, now=0.0, proxy=True)
    client.receive_response(response(200, method=request.method), now=0.1)
    client.hold_request_as_bytes()
    assert client._request is None
    again = client.request
    assert again.to_bytes() == request.to_bytes()
    assert again.method == request.method
    assert again.uri_text == request.uri_text
    assert again.header_fields() == request.header_fields()


def test_most_torture_messages_are_requests_the_proxy_edits() -> None:
    """The test above runs for most of the torture messages, not a handful."""
    assert len(EDITED) >= 40
