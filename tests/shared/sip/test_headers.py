"""Header names, compact forms and comma splitting."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from shared.sip import headers
from shared.sip.errors import SipParseError
from shared.sip.headers import (
    COMPACT_FORMS,
    canonical_name,
    header_key,
    key_of_raw_name,
    split_commas,
)
from shared.sip.message import parse_message


@pytest.mark.parametrize(
    ("compact", "key"),
    [
        ("v", "via"),
        ("f", "from"),
        ("t", "to"),
        ("i", "call-id"),
        ("m", "contact"),
        ("l", "content-length"),
        ("c", "content-type"),
        ("k", "supported"),
        ("s", "subject"),
        ("e", "content-encoding"),
        ("o", "event"),
        ("u", "allow-events"),
        ("r", "refer-to"),
        ("b", "referred-by"),
        ("x", "session-expires"),
    ],
)
def test_compact_forms(compact: str, key: str) -> None:
    assert COMPACT_FORMS[compact] == key
    assert header_key(compact.upper()) == key
    assert key_of_raw_name(compact.encode() + b" :") == key


def test_names_are_case_insensitive_and_canonically_spelled() -> None:
    assert header_key("MaX-fOrWaRdS") == "max-forwards"
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("record-route") == "Record-Route"


def test_raw_names_must_be_tokens() -> None:
    with pytest.raises(SipParseError, match="malformed header name"):
        key_of_raw_name(b"Bad Name:")
    with pytest.raises(SipParseError, match="malformed header name"):
        key_of_raw_name(b":")


def test_split_commas_respects_quotes_and_angle_brackets() -> None:
    assert split_commas("a, b ,c") == ["a", "b", "c"]
    assert split_commas('"Doe, J" <sip:a@b>, <sip:c@d;x=1,2>') == [
        '"Doe, J" <sip:a@b>',
        "<sip:c@d;x=1,2>",
    ]
    assert split_commas('"a\\", b" <sip:x@y>') == ['"a\\", b" <sip:x@y>']
    assert split_commas("a,,") == ["a", "", ""]
    with pytest.raises(SipParseError, match="unterminated quoted string"):
        split_commas('"a, b')


@pytest.mark.parametrize("raw", [b"Subject\x0b:", b"Subject\x0c:", b"Subject\r:"])
def test_only_spaces_and_tabs_may_precede_the_colon(raw: bytes) -> None:
    with pytest.raises(SipParseError):
        key_of_raw_name(raw)


def test_a_name_never_seen_before_is_its_own_key_in_lower_case() -> None:
    """The key memo is process-wide: only a fresh name runs the code that derives a key."""
    name = f"X-Fresh-{uuid.uuid4().hex}"
    assert header_key(name) == name.lower()


def test_commas_inside_angle_brackets_do_not_split() -> None:
    assert split_commas("<sip:a@x;p=1,2>, <sip:b@x>") == ["<sip:a@x;p=1,2>", "<sip:b@x>"]


@pytest.fixture
def fresh_memos() -> Iterator[None]:
    """The name memos emptied for the test (a hostile-names test may have filled them: past
    their bound, names are neither kept nor interned), then given back."""
    saved = (dict(headers.KEY_MEMO), dict(headers._KEY_OF_NAME))
    headers.KEY_MEMO.clear()
    headers._KEY_OF_NAME.clear()
    try:
        yield
    finally:
        headers.KEY_MEMO.update(saved[0])
        headers._KEY_OF_NAME.update(saved[1])


@pytest.mark.usefixtures("fresh_memos")
def test_a_messages_keys_are_the_interned_strings_of_the_names() -> None:
    """Compiled look-ups of a key literal (interned by mypyc) find it by identity."""
    message = parse_message(
        b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 70\r\nRecord-Route: <sip:p>\r\n"
        b"Call-ID: x\r\nContent-Length: 0\r\n\r\n"
    )
    for key in ("max-forwards", "record-route", "call-id", "content-length"):
        assert any(held is sys.intern(key) for held in message._keys)
    assert header_key("Max-Forwards") is sys.intern("max-forwards")
    assert key_of_raw_name(b"Record-Route:") is sys.intern("record-route")


@pytest.mark.usefixtures("fresh_memos")
def test_names_past_the_memos_bound_are_not_interned() -> None:
    """An interned string lives for good from Python 3.12: a peer sending ever new header
    names must not make the edge intern each one."""
    for n in range(600):
        header_key(f"X-Hostile-{n}")
    late = header_key("X-Hostile-Late-Name")
    assert late == "x-hostile-late-name"
    assert late is not sys.intern("x-hostile-late-name")  # that interns the literal instead
