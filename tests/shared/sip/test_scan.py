"""The C scan (`shared/sip/_scan.c`) against the readers' own framing (`_readers._frame`).

Whatever the C scan frames must come out exactly as the Python readers frame it, and what it
does not frame is left to them (None), and `field_value` must read every value as
`read_value` does.  Both the compiled pass and the pure-Python pass of the suite run these
tests: the pure pass loads the C module from the build's file (or compiles it:
`tests/shared/sip/accelerators.py`), so it compares the C with the interpreted Python.
"""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.extensions import ROOT
from shared.sip import _fields, _readers
from shared.sip.errors import SipParseError
from shared.sip.headers import KEY_MEMO, key_of_raw_name
from shared.sip.message import MAX_HEADER_FIELDS, MAX_LINE_LENGTH, Request, Response
from tests.services.edge.policy.support import invite
from tests.shared.sip.accelerators import binary, load, mutants
from tests.shared.sip.torture import DATA

Scan = Callable[[bytes, dict[bytes, str]], "tuple[bytes, list[str], list[bytes], int, int] | None"]
SOURCE = "shared/sip/_scan.c"


def test_without_a_matching_build_the_scan_is_compiled_from_its_source(tmp_path: Path) -> None:
    """A tree without a build (mutmut's copy) gets the module compiled from `_scan.c`."""
    (tmp_path / "shared/sip").mkdir(parents=True)
    (tmp_path / SOURCE).write_bytes((ROOT / SOURCE).read_bytes())
    compiled = binary(SOURCE, tmp_path)
    assert compiled.is_relative_to(tmp_path / "build/c-test") and compiled.is_file()
    assert binary(SOURCE, tmp_path) == compiled  # compiled once


@pytest.fixture(scope="module")
def scan() -> Scan:
    scan_head: Scan = load(SOURCE).scan_head
    return scan_head


@pytest.fixture(scope="module")
def field_value() -> Callable[[bytes], str]:
    reader: Callable[[bytes], str] = load(SOURCE).field_value
    return reader


Outcome = tuple[object, ...]


def framed_by_python(data: bytes, stream: bool) -> Outcome:
    return _shape(lambda: _readers._frame(data, stream, True))


def framed_by_c(scan: Scan, data: bytes, stream: bool) -> Outcome | None:
    scanned = scan(data, KEY_MEMO)
    if scanned is None:
        return None
    start, keys, lines, body_start, declared = scanned
    return _shape(
        lambda: _readers._framed(data, stream, True, start, keys, lines, body_start, declared)
    )


def _shape(frame: Callable[[], Request | Response]) -> Outcome:
    """A message as its framed parts, or the error refusing it."""
    try:
        message = frame()
    except SipParseError as error:
        return ("refused", str(error), error.status)
    return (
        type(message).__name__,
        message._start,
        list(message._keys),
        list(message._lines),
        message._body,
        message._wire,
        message.to_bytes(),
    )


def _corpus() -> list[bytes]:
    """The torture messages (RFC 4475, RFC 5118 in both line endings) and a proxy's INVITE."""
    files = [*sorted((DATA / "rfc4475").glob("*.dat")), *sorted((DATA / "rfc5118").rglob("*"))]
    return [path.read_bytes() for path in files if path.is_file() and path.suffix != ".tsv"] + [
        invite(),
        WITH_BODY,
    ]


WITH_BODY = (
    invite(extra="Content-Type: application/sdp\r\n").replace(
        b"Content-Length: 0", b"Content-Length: 5"
    )
    + b"v=0\r\n"
)


INSERTS = (b"\r", b"\n", b"\r\n", b":", b" ", b"\t", b"\x00", b"\r\n\r\n", b"\r\n ", b"l: 3\r\n")


def test_the_scan_frames_every_message_it_takes_as_the_readers_do(scan: Scan) -> None:
    """The torture corpus and 40 random mutants of each, datagram and stream: the C scan
    agrees with the readers (or leaves the message to them) every time, and it takes a good
    share of them (41 %: most torture messages are odd on purpose)."""
    rng = random.Random(4475)
    taken = compared = 0
    for original in _corpus():
        for data in [original, *mutants(original, INSERTS, rng, 40)]:
            for stream in (False, True):
                by_python = framed_by_python(data, stream)  # first: the memo learns the names
                by_c = framed_by_c(scan, data, stream)
                compared += 1
                if by_c is not None:
                    taken += 1
                    assert by_c == by_python, (data, stream)
    assert compared > 6000
    assert taken > compared // 4


def test_parse_message_through_the_scan_frames_as_the_readers_do(
    scan: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parse_message`'s own use of the scan, in both passes: pure Python is given the C scan
    here (compiled, it has it already), so a slip in how it hands the scan's parts on fails
    here, not only in the compiled build (mutation testing runs pure Python)."""
    monkeypatch.setattr(_readers, "SCAN", scan)
    for data in _corpus():
        for stream in (False, True):
            parsed = functools.partial(_readers.parse_message, data, stream=stream)
            assert _shape(parsed) == framed_by_python(data, stream), (data, stream)


def test_a_plain_request_is_framed_in_c_with_its_content_length(scan: Scan) -> None:
    data = WITH_BODY + b"ignored"
    framed_by_python(data, False)  # the memo learns its names
    scanned = scan(data, KEY_MEMO)
    assert scanned is not None
    start, keys, lines, body_start, declared = scanned
    assert start == b"INVITE sip:14075551234@192.0.2.10 SIP/2.0"
    assert keys[:2] == ["via", "via"] and keys.count("content-length") == 1
    assert lines[0] == b"Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKin1;rport"
    assert (data[body_start:], declared) == (b"v=0\r\nignored", 5)
    assert scan(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", KEY_MEMO) == (
        b"SIP/2.0 200 OK",
        ["call-id"],
        [b"Call-ID: x"],
        30,
        -1,
    )


HEAD = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n"
for _name in (b"Call-ID", b"Subject", b"l", b"Content-Length", b"Via"):
    key_of_raw_name(_name)  # the memo holds them, as once the readers met them


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n" + HEAD + b"\r\n",  # a keep-alive before it
        HEAD + b"Subject: a\r\n b\r\n\r\n",  # a fold
        HEAD + b"Subject: a\rb\r\n\r\n",  # a bare CR
        HEAD + b"Subject: a\nb\r\n\r\n",  # a bare LF
        b"OPTIONS sip:a@b SIP/2.0\nCall-ID: x\n\n",  # bare-LF line endings
        HEAD + b"X-Never-Seen-Before-Here: 1\r\n\r\n",  # a name the memo does not hold
        HEAD + b"Call-ID x\r\n\r\n",  # no colon
        HEAD + b"l: 1\r\nContent-Length: 1\r\n\r\nab",  # two Content-Lengths
        HEAD + b"l: 1a\r\n\r\nab",  # not digits
        HEAD + b"l: -1\r\n\r\n",
        HEAD + b"l: 1234567890\r\n\r\n",  # ten digits
        HEAD + b"l:\r\n\r\n",  # none
        b"OPTIONS sip:a@b SIP/2.0\r\n\r\n",  # no header line
        HEAD,  # no empty line
        HEAD + b"Subject: " + b"y" * (MAX_LINE_LENGTH - 8) + b"\r\n\r\n",  # a line too long
        HEAD + b"Subject: s\r\n" * (MAX_HEADER_FIELDS - 1) + b"\r\n",  # too many fields
        HEAD + b"\r\n" + b"x" * 65535,  # too large
        b"",
    ],
)
def test_what_is_not_plain_is_left_to_the_readers(scan: Scan, data: bytes) -> None:
    assert scan(data, KEY_MEMO) is None


def test_a_bytearray_or_a_memo_value_not_a_str_is_left_to_the_readers(scan: Scan) -> None:
    """Only exact bytes are scanned, and only a str found in the memo is a key (None is the
    readers' "not in the memo" too)."""
    plain = HEAD + b"\r\n"
    assert scan(plain, {b"Call-ID": "call-id"}) is not None
    assert scan(bytearray(plain), {b"Call-ID": "call-id"}) is None  # type: ignore[arg-type]
    for value in (None, b"call-id", 1):
        assert scan(plain, {b"Call-ID": value}) is None  # type: ignore[dict-item]


def test_the_bounds_are_the_readers_own(scan: Scan) -> None:
    """The longest line and the most fields the readers accept, the C scan frames too."""
    longest = HEAD + b"Subject: " + b"y" * (MAX_LINE_LENGTH - 9) + b"\r\n\r\n"
    most = HEAD + b"Subject: s\r\n" * (MAX_HEADER_FIELDS - 2) + b"\r\n"
    for data in (longest, most):
        assert framed_by_c(scan, data, False) == framed_by_python(data, False)
        assert scan(data, KEY_MEMO) is not None


def test_the_names_it_remembers_are_the_memos_it_is_given(scan: Scan) -> None:
    """The scan remembers the names it found in the memo; another memo makes it forget them,
    and a name too long to remember is looked up in the memo every time.  A key equal to
    "content-length" but not the interned one is Content-Length's all the same."""
    long_name = b"X-A-Header-Name-Longer-Than-Thirty-One-Bytes"
    data = HEAD + long_name + b": 1\r\nl: 12\r\n\r\n" + b"x" * 12
    length = "".join(["content-", "length"])
    memo = {b"Call-ID": "call-id", long_name: "x-long", b"l": length}
    framed = (
        b"OPTIONS sip:a@b SIP/2.0",
        ["call-id", "x-long", "content-length"],
        [b"Call-ID: x", long_name + b": 1", b"l: 12"],
        len(data) - 12,
        12,
    )
    assert scan(data, memo) == framed
    assert scan(data, memo) == framed
    assert scan(data, {}) is None
    other = {b"Call-ID": "call-id"}
    assert scan(HEAD + b"\r\n", other) == (framed[0], ["call-id"], [b"Call-ID: x"], 39, -1)
    assert scan(data, other) is None
    assert scan(data, memo) == framed
    del memo[b"Call-ID"]
    assert scan(data, memo) is None  # a memo that forgot names (a test's) is followed


def test_the_scan_keeps_no_reference_it_should_not(scan: Scan) -> None:
    """Plain and not plain, a thousand times: no reference to the keys or the data is left
    behind (a leak in C would show in their counts)."""
    plain, odd = invite(), HEAD + b"Subject: a\r\n b\r\n\r\n"
    key = KEY_MEMO[b"Via"]
    scan(plain, KEY_MEMO)  # the scan remembers the names (and holds their keys) once
    before = sys.getrefcount(key), sys.getrefcount(plain), sys.getrefcount(odd)
    for _ in range(1000):
        scan(plain, KEY_MEMO)
        scan(odd, KEY_MEMO)
    assert (sys.getrefcount(key), sys.getrefcount(plain), sys.getrefcount(odd)) == before


@pytest.mark.parametrize("arguments", [(b"x", None), (b"x", []), (b"x",), ()])
def test_a_wrong_call_is_a_type_error(scan: Scan, arguments: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        scan(*arguments)  # type: ignore[arg-type]


def test_the_readers_use_it_in_the_compiled_build_only() -> None:
    """The compiled build frames plain messages and reads values in C; pure Python has no C
    scan at all."""
    from shared.extensions import STATE

    compiled = STATE.startswith("compiled")
    assert (_readers.SCAN is not None) == compiled
    assert (_fields.value_of is not _fields.read_value) == compiled


def _read(reader: Callable[[bytes], str], line: bytes) -> object:
    try:
        return reader(line)
    except SipParseError as error:
        return ("refused", str(error), error.status)


VALUE_INSERTS = (
    b"\r\n ", b"\n\t", b"\r\n", b"\r", b"\n", b"\r\r\n\t ", b" ", b"\t", b":",
    b"\xc3", b"\xff", b"\xe2\x82\xac", b"\xc3\xa9", b"\x00",
)  # kept as rows of like inserts  # fmt: skip


def test_a_value_reads_the_same_in_c_as_in_python(field_value: Callable[[bytes], str]) -> None:
    """Every header line of the corpus, and 30 mutants of each (folds, line ends, blanks, bad
    and good UTF-8 inserted, bytes dropped): the same value or the same refusal."""
    rng = random.Random(3261)
    lines = {line for data in _corpus() for line in data.replace(b"\r\n", b"\n").split(b"\n")}
    lines |= {b"", b":", b"Subject", b"Subject:", b"Subject: a\r\n\tb\r\n c", b"S: \r\n x \r\n"}
    compared = refused = folded = 0
    for original in sorted(lines):
        for line in [original, *_value_mutants(original, rng, 30)]:
            by_python = _read(_fields.read_value, line)
            assert _read(field_value, line) == by_python, line
            compared += 1
            refused += isinstance(by_python, tuple)
            folded += b"\n " in line or b"\n\t" in line
    assert compared > 10000 and refused > 500 and folded > 500


def _value_mutants(line: bytes, rng: random.Random, count: int) -> list[bytes]:
    found = []
    for _ in range(count):
        at = rng.randrange(len(line) + 1)
        if rng.randrange(4):
            found.append(line[:at] + rng.choice(VALUE_INSERTS) + line[at:])
        else:
            found.append(line[:at] + line[at + 1 :])
    return found


def test_a_value_of_a_bytes_subclass_is_read_as_python_reads_it(
    field_value: Callable[[bytes], str],
) -> None:
    class Line(bytes):
        pass

    assert field_value(Line(b"Subject: a\r\n b ")) == _fields.read_value(Line(b"Subject: a\r\n b "))


def test_a_value_of_a_wrong_type_is_a_type_error(field_value: Callable[[bytes], str]) -> None:
    for wrong in ("Subject: x", bytearray(b"Subject: x"), None):
        with pytest.raises(TypeError):
            field_value(wrong)  # type: ignore[arg-type]
