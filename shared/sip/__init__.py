"""Sans-IO SIP message layer: parse, inspect, edit and serialise SIP messages (RFC 3261).

Bytes in, message objects and bytes out; no sockets, clocks or asyncio here.
"""

from shared.sip.address import Address, parse_address, parse_address_list
from shared.sip.branch import new_branch, new_call_id, new_tag
from shared.sip.checks import check_proxy_request
from shared.sip.errors import SipError, SipParseError
from shared.sip.message import (
    Message,
    Request,
    Response,
    find_head_end,
    parse_message,
)
from shared.sip.responses import error_response, make_response, reason_phrase
from shared.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri
from shared.sip.values import CSeq
from shared.sip.via import Via, parse_via, parse_vias

__all__ = [
    "AbsoluteUri",
    "Address",
    "CSeq",
    "Message",
    "Request",
    "Response",
    "SipError",
    "SipParseError",
    "SipUri",
    "TelUri",
    "Uri",
    "Via",
    "check_proxy_request",
    "error_response",
    "find_head_end",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_address",
    "parse_address_list",
    "parse_message",
    "parse_uri",
    "parse_via",
    "parse_vias",
    "reason_phrase",
]
