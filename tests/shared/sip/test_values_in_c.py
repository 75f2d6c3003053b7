"""The small values in C (`shared/sip/_values.c`) against `shared/sip/values.py`.

`is_call_id` must check every Call-ID as `values._CALL_ID` does, and `cseq_parts` read every
CSeq it reads exactly as `values.parse_cseq` reads it, leaving the rest to it (None).  Both
the compiled pass and the pure-Python pass of the suite run these tests: the pure pass loads
the C module from the build's file (or compiles it: `tests/shared/sip/accelerators.py`), so it
compares the C with the interpreted Python.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable

import pytest

from shared.sip import values
from shared.sip.errors import SipParseError
from tests.services.edge.policy.support import invite
from tests.shared.sip.accelerators import load, mutants
from tests.shared.sip.torture import DATA

SOURCE = "shared/sip/_values.c"
CseqParts = Callable[[str], "tuple[int, str] | None"]


def corpus_values(*names: bytes) -> set[str]:
    """The values of the headers `names` (lower case) in the torture messages (RFC 4475, RFC
    5118) and a proxy's INVITE, undecodable bytes replaced."""
    files = [*sorted((DATA / "rfc4475").glob("*.dat")), *sorted((DATA / "rfc5118").rglob("*"))]
    messages = [path.read_bytes() for path in files if path.is_file() and path.suffix != ".tsv"]
    found = set()
    for data in [*messages, invite()]:
        for line in data.replace(b"\r\n", b"\n").split(b"\n"):
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() in names:
                found.add(value.strip().decode("utf-8", "replace"))
    return found


@pytest.fixture(scope="module")
def is_call_id() -> Callable[[str], bool]:
    check: Callable[[str], bool] = load(SOURCE).is_call_id
    return check


@pytest.fixture(scope="module")
def cseq_parts() -> CseqParts:
    reader: CseqParts = load(SOURCE).cseq_parts
    return reader


CALL_ID_INSERTS = (
    "@", "@@", " ", "\t", "é", "€", "\x00", "\x7f", ";", ",", "=", '"', "\\", "a", "",
)  # kept as a row of like inserts  # fmt: skip


def test_a_call_id_is_checked_the_same_in_c_as_by_the_pattern(
    is_call_id: Callable[[str], bool],
) -> None:
    """Every Call-ID of the corpus, every printable ASCII character alone and around an `@`,
    and 40 mutants of each Call-ID (an `@`, blanks, non-ASCII, separators put in, a character
    dropped, cut short): the same answer as `values._CALL_ID.fullmatch`."""
    rng = random.Random(4475)
    ids = {"", "@", "a@", "@a", "a@b", "a@b@c", "a@@b"} | corpus_values(b"call-id", b"i")
    for code in range(32, 127):
        ids |= {chr(code), f"a{chr(code)}b", f"a@{chr(code)}", f"{chr(code)}@b"}
    compared = accepted = 0
    for original in sorted(ids):
        for text in [original, *mutants(original, CALL_ID_INSERTS, rng, 40)]:
            expected = values._is_call_id(text)
            assert is_call_id(text) is expected, text
            compared += 1
            accepted += expected
    assert compared > 10000 and 0.2 < accepted / compared < 0.8


def test_parse_call_id_checks_through_the_c_as_by_the_pattern(
    is_call_id: Callable[[str], bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parse_call_id`'s own use of the check, in both passes: the compiled build holds the C
    as its static (which a monkeypatch would not reach), pure Python is given it here."""
    if values.IS_CALL_ID is values._is_call_id:
        monkeypatch.setattr(values, "IS_CALL_ID", is_call_id)
    else:
        assert values.IS_CALL_ID is is_call_id
    call_id = "a84b4c76e66710@pc33.atlanta.com"
    assert values.parse_call_id(call_id) == call_id
    for text in ("a b", "a@b@c", "", "é@x"):
        with pytest.raises(SipParseError, match="malformed Call-ID"):
            values.parse_call_id(text)


def read_in_python(text: str) -> tuple[int, str] | None:
    """What `values.parse_cseq` makes of `text` without the C: (seq, method), or None if it
    refuses it."""
    try:
        cseq = values._parse_cseq_in_python(text)
    except SipParseError:
        return None
    return cseq.seq, cseq.method


CSEQ_INSERTS = (
    " ", "  ", "\t", "\r", "\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u3000",
    "0", "9", "\u0663", "é", "-", ".", "!", "%", "*", "_", "+", "`", "'", "~", ";", ",", "@", "/",
    "\x00", "\x7f", "A", "z",
)  # str.split's blanks, digits (one Arabic-Indic), token and other characters  # fmt: skip


def test_a_cseq_read_in_c_is_read_as_python_reads_it(cseq_parts: CseqParts) -> None:
    """Every CSeq of the corpus, numbers of 1 to 12 digits with each method and a few tokens,
    and 60 mutants of each: where the C reads one, Python reads the same (seq, method); the
    C leaves the rest to Python, and reads most of the plain ones itself."""
    rng = random.Random(3261)
    texts = corpus_values(b"cseq") | {"", " ", "1", "INVITE", "1 INVITE extra", "-1 BYE"}
    for digits in range(1, 13):
        number = "".join(rng.choice("0123456789") for _ in range(digits))
        for method in [*sorted(values._METHODS), "FOO-1", "x", "invite", "a.b!c"]:
            texts.add(f"{number} {method}")
    compared = read = 0
    for original in sorted(texts):
        for text in [original, *mutants(original, CSEQ_INSERTS, rng, 60)]:
            parts = cseq_parts(text)
            expected = read_in_python(text)
            if parts is not None:
                assert parts == expected, text
                read += 1
            compared += 1
    assert compared > 15000 and read / compared > 0.3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 INVITE", (1, "INVITE")),
        ("314159 INVITE", (314159, "INVITE")),
        ("0009 \t INVITE", (9, "INVITE")),
        ("\t 7 \x1c ACK \r\n", (7, "ACK")),
        ("999999999 FOO-bar.1", (999999999, "FOO-bar.1")),
        ("2 bye", (2, "bye")),
    ],
)
def test_plain_cseqs_are_read_in_c(
    cseq_parts: CseqParts, text: str, expected: tuple[int, str]
) -> None:
    assert cseq_parts(text) == expected


def test_every_blank_str_split_takes_in_ascii_is_taken_in_c(cseq_parts: CseqParts) -> None:
    """Each ASCII character between the number and the method, and around them: where
    `str.split` takes it as a blank, the C reads the CSeq; where not, it is a token
    character (then part of the method or of a malformed number) or the CSeq is Python's."""
    blanks = 0
    for code in range(128):
        blank = chr(code)
        if f"1{blank}INVITE".split() == ["1", "INVITE"]:
            assert cseq_parts(f"{blank}1{blank}INVITE{blank}") == (1, "INVITE"), code
            blanks += 1
        else:
            parts = cseq_parts(f"1 INVITE{blank}")
            assert parts is None or parts == read_in_python(f"1 INVITE{blank}"), code
    assert blanks == 10  # \t \n \v \f \r, \x1c to \x1f, space


@pytest.mark.parametrize(
    "text",
    [
        "1000000000 INVITE",  # ten digits: Python checks the range
        "2147483648 INVITE",
        "1 INV;ITE",
        "1 INVITE INVITE",
        "1INVITE",
        "INVITE 1",
        "1 ",
        " 1",
        "",
        "\u0661 INVITE",  # an Arabic-Indic one: str.isdigit's, not a SIP digit
        "1\xa0INVITE",  # a blank str.split takes, beyond ASCII
        "+1 INVITE",
        "\u2031\u4141xx",  # wide characters whose bytes spell "1 AAxx" read as bytes
        "\u2031\u3131 INVITE",
    ],
)
def test_any_other_cseq_is_left_to_python(cseq_parts: CseqParts, text: str) -> None:
    assert cseq_parts(text) is None


def test_a_method_of_every_token_character_is_read_in_c(cseq_parts: CseqParts) -> None:
    token = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
    assert cseq_parts(f"1 {token}") == (1, token) == read_in_python(f"1 {token}")


def wide_texts() -> list[str]:
    """Two and three characters beyond Latin-1 whose bytes, read one at a time, would spell
    digits, blanks, token characters and `@`: a reader of bytes would take them for text."""
    ascii_parts = [ord(c) for c in "0123456789 \t@aZ-~;"]
    wide = [chr(low | high << 8) for low in ascii_parts for high in ascii_parts if high]
    rng = random.Random(5118)
    return wide + ["".join(rng.choice(wide) for _ in range(3)) for _ in range(2000)]


def test_wide_text_is_read_as_python_reads_it(
    cseq_parts: CseqParts, is_call_id: Callable[[str], bool]
) -> None:
    for text in wide_texts():
        for variant in (text, f"1 {text}", f"{text} INVITE", f"a@{text}"):
            assert cseq_parts(variant) is None, variant
            assert is_call_id(variant) is values._is_call_id(variant) is False, variant


def test_a_method_of_the_rfcs_is_the_same_string_each_time(cseq_parts: CseqParts) -> None:
    """Interned: no new string per CSeq, and the proxy's comparisons are by identity first."""
    for method in values._METHODS:
        first, second = cseq_parts(f"1 {method}"), cseq_parts(f"22 {method}")
        assert first is not None and second is not None
        assert first[1] is second[1] is sys.intern(method)
    other = cseq_parts("1 FOO")
    assert other is not None and other[1] == "FOO"


def test_parse_cseq_reads_through_the_c_as_python_does(
    cseq_parts: CseqParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parse_cseq`'s own use of the C, in both passes (as for the Call-ID above)."""
    if values.CSEQ_PARTS is None:
        monkeypatch.setattr(values, "CSEQ_PARTS", cseq_parts)
    else:
        assert values.CSEQ_PARTS is cseq_parts
    assert values.parse_cseq("0009 \t INVITE") == values.CSeq(9, "INVITE")
    assert values.parse_cseq("2147483647 BYE") == values.CSeq(2**31 - 1, "BYE")
    with pytest.raises(SipParseError, match="CSeq sequence number out of range"):
        values.parse_cseq("2147483648 INVITE")
    with pytest.raises(SipParseError, match="malformed CSeq"):
        values.parse_cseq("1 INV;ITE")


@pytest.mark.parametrize("name", ["is_call_id", "cseq_parts"])
def test_a_value_of_a_wrong_type_is_a_type_error(name: str) -> None:
    check = getattr(load(SOURCE), name)
    for wrong in (b"1 INVITE", None, 1):
        with pytest.raises(TypeError):
            check(wrong)


def test_the_values_are_read_in_c_in_the_compiled_build_only() -> None:
    from shared.extensions import STATE

    compiled = STATE.startswith("compiled")
    assert (values.IS_CALL_ID is not values._is_call_id) == compiled
    assert (values.CSEQ_PARTS is not None) == compiled
