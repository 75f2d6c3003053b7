"""The C URI and Via readers (`shared/sip/_uri.c`) against the Python ones (`uri._read_uri`,
`via._read_via`).

Whatever SIP URI or via-parm the C readers read must come out exactly as the Python readers
read it, and what they do not read is left to Python (None). Both passes of the suite run
these tests: the pure pass loads the C module from the build's file or compiles it
(`tests/shared/sip/accelerators.py`), so it compares the C with the interpreted Python.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable

import pytest

from shared.sip import uri, via
from shared.sip.errors import SipParseError
from shared.sip.headers import split_commas
from shared.sip.uri import SipUri, SipUriParts
from shared.sip.via import Via, ViaParts
from tests.shared.sip.accelerators import load, mutants
from tests.shared.sip.torture import DATA

SipUriReader = Callable[[str], SipUriParts | None]
ViaReader = Callable[[str], ViaParts | None]
SOURCE = "shared/sip/_uri.c"


@pytest.fixture(scope="module")
def sip_uri() -> SipUriReader:
    reader: SipUriReader = load(SOURCE).sip_uri
    return reader


def read_by_python(text: str) -> object:
    """What `_read_uri` makes of `text`: the URI's fields and text, or its refusal."""
    return read_by(uri._read_uri, text)


def read_by(reader: Callable[[str], uri.Uri], text: str) -> object:
    try:
        read = reader(text)
    except SipParseError as error:
        return ("refused", str(error))
    if not isinstance(read, SipUri):
        return ("not sip", type(read).__name__)
    return _fields(read)


def read_by_c(reader: SipUriReader, text: str) -> object | None:
    parts = reader(text)
    return None if parts is None else _fields(SipUri(*parts))


def _fields(read: SipUri) -> tuple[object, ...]:
    """Every field with its type (a port of 5060 and one of "5060" must not pass as the same)."""
    fields = (read.scheme, read.user, read.password, read.host, read.port, read.params)
    return (*fields, read.headers, tuple(map(type, fields)), str(read))


URI_IN_TEXT = re.compile(r"(?i)(?:sips?|tel|mailto|http)s?:[^\s<>\"]+")


def _corpus() -> list[str]:
    """Every URI-like text in the torture messages (RFC 4475, RFC 5118), and the usual ones."""
    found: set[str] = set()
    for path in [*(DATA / "rfc4475").glob("*.dat"), *(DATA / "rfc5118").rglob("*")]:
        if path.is_file():
            found.update(URI_IN_TEXT.findall(path.read_bytes().decode("utf-8", "replace")))
    return sorted(found) + USUAL


USUAL = [
    "sip:+14075551234@127.0.0.1:15071",
    "sip:14075551234@edge.example.com;user=phone",
    "sip:127.0.0.1:15062;lr;cm-rr=aXk.1234;transport=udp",
    "SIP:alice@atlanta.com;Transport=TCP;LR",
    "sips:bob:secret@biloxi.example.com:5061;maddr=10.0.0.1;ttl=0;novalue=",
    "sip:host;a=b=c;flag;x=",
    "sip:user;tag=x@host",
    "sip:a:@host",
    "sip:registrar.example.net",
    "sip:host_with-chars.example:0",
    "sip:host:00005",
]

INSERTS = ("@", ":", ";", "=", "?", "%", "%41", "[", "]", " ", "\t", "\x00", "\x7f", "é", "A", "")


def test_the_c_reader_reads_every_uri_it_takes_as_python_does(sip_uri: SipUriReader) -> None:
    """Every URI of the torture corpus and the usual ones, and 60 random mutants of each: the
    C reader agrees with Python (or leaves the text to it), and it takes a good share."""
    compared, taken = compare_readers(
        _corpus(), INSERTS, 3261, lambda text: read_by_c(sip_uri, text), read_by_python
    )
    assert compared > 5000
    assert taken > compared // 5


def compare_readers(
    corpus: list[str],
    inserts: tuple[str, ...],
    seed: int,
    by_c: Callable[[str], object | None],
    by_python: Callable[[str], object],
) -> tuple[int, int]:
    """Every text of `corpus` and 60 random mutants of each through both readers, asserting
    that they agree on each text C reads: how many were compared, and how many C read."""
    rng = random.Random(seed)
    taken = compared = 0
    for original in corpus:
        for text in [original, *mutants(original, inserts, rng, 60)]:
            read = by_c(text)
            compared += 1
            if read is not None:
                taken += 1
                assert read == by_python(text), text
    return compared, taken


def test_parse_uri_through_the_c_reader_reads_as_python_does(
    sip_uri: SipUriReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parse_uri`'s own use of the C reader, in both passes: pure Python is given it here
    (compiled, it has it already), so a slip in how its parts become a `SipUri` fails here,
    not only in the compiled build (mutation testing runs pure Python)."""
    monkeypatch.setattr(uri, "SIP_URI", sip_uri)
    for text in _corpus():
        assert read_by(uri.parse_uri, text) == read_by(uri._read_uri, text), text


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "sip:+14075551234@127.0.0.1:15071",
            ("127.0.0.1", "+14075551234", None, 15071, (), (), "sip"),
        ),
        (
            "SIPS:bob:@Biloxi.example.com;LR;Transport=TCP;x=A=b",
            (
                "Biloxi.example.com",
                "bob",
                "",
                None,
                (("lr", None), ("transport", "TCP"), ("x", "A=b")),
                (),
                "sips",
            ),
        ),
        ("sip:host:65535;n=", ("host", None, None, 65535, (("n", ""),), (), "sip")),
    ],
)
def test_a_plain_uri_is_read_in_c_into_the_sip_uris_arguments(
    sip_uri: SipUriReader, text: str, parts: SipUriParts
) -> None:
    assert sip_uri(text) == parts


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:[::1]:5060",  # an IPv6 reference
        "sip:alice%40home@host",  # an escape
        "sip:host?subject=hi",  # URI headers
        "tel:+14075551234",
        "mailto:a@b",
        "sipx:host",
        "sip:host;",  # a parameter without a name
        "sip:host;=x",
        "sip:@host",  # an empty user
        "sip:host:",  # an empty port
        "sip:host:123456",
        "sip:host:65536",
        "sip:host:5o60",
        "sip:ho st",
        "sip:ho\tst",
        "sip:hostä",
        "sip:host\x7f",
        "sip:ho/st",
        "sip:;lr",
    ],
)
def test_what_is_not_plain_is_left_to_python(sip_uri: SipUriReader, text: str) -> None:
    assert sip_uri(text) is None


def test_a_str_subclass_is_left_to_python(sip_uri: SipUriReader) -> None:
    class Text(str):
        pass

    assert sip_uri(Text("sip:host")) is None


@pytest.mark.parametrize("argument", [b"sip:host", None, 5])
def test_a_wrong_argument_is_a_type_error(sip_uri: SipUriReader, argument: object) -> None:
    with pytest.raises(TypeError):
        sip_uri(argument)  # type: ignore[arg-type]


def test_the_reader_keeps_no_reference_it_should_not(sip_uri: SipUriReader) -> None:
    """Read, refused and left, a thousand times: the text and the shared scheme and empty
    headers keep their counts (a leak in C would show in them)."""
    plain, odd, bad = "sip:u:p@host:5060;lr;x=y", "sip:[::1]", "sip:host;"
    scheme = sip_uri(plain)
    assert scheme is not None
    shared = scheme[6], scheme[5]
    del scheme
    before = [sys.getrefcount(item) for item in (plain, odd, bad, *shared)]
    for _ in range(1000):
        sip_uri(plain)
        sip_uri(odd)
        sip_uri(bad)
    assert [sys.getrefcount(item) for item in (plain, odd, bad, *shared)] == before


def test_parse_uri_uses_it_in_the_compiled_build_only() -> None:
    from shared.extensions import STATE

    assert (uri.SIP_URI is not None) == STATE.startswith("compiled")
    assert (via.SIP_VIA is not None) == STATE.startswith("compiled")


# ----- Vias ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sip_via() -> ViaReader:
    reader: ViaReader = load(SOURCE).sip_via
    return reader


def via_read_by(reader: Callable[[str], Via], text: str) -> object:
    """What `reader` makes of `text`: the Via's fields, their types and its text, or its refusal."""
    try:
        read = reader(text)
    except SipParseError as error:
        return ("refused", str(error))
    fields = (read.protocol, read.transport, read.host, read.port, read.params)
    return (*fields, tuple(map(type, fields)), str(read))


def via_read_by_c(reader: ViaReader, text: str) -> object | None:
    parts = reader(text)
    return None if parts is None else via_read_by(lambda _text: Via(*parts), text)


VIA_LINE = re.compile(r"(?im)^(?:via|v)[ \t]*:(.*(?:\r?\n[ \t].*)*)")


def _via_corpus() -> list[str]:
    """Every via-parm of the torture messages (RFC 4475, RFC 5118), and the usual ones."""
    found: set[str] = set()
    for path in [*(DATA / "rfc4475").glob("*.dat"), *(DATA / "rfc5118").rglob("*")]:
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for value in VIA_LINE.findall(text):
                found.update(part.strip() for part in split_commas(" ".join(value.split())))
    return sorted(found) + USUAL_VIAS


USUAL_VIAS = [
    "SIP/2.0/UDP 127.0.0.1:15080;branch=z9hG4bK-1-2;rport",
    "SIP/2.0/UDP 127.0.0.1:15062;branch=z9hG4bK.cm.abc;rport=15080;received=127.0.0.1",
    "SIP/2.0/tcp pc33.atlanta.com;BRANCH=z9hG4bK776asdhds;TTL=1",
    "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7",
    "SIP/2.0/TLS host_1:0",
    "SIP/2.0/UDP host:05060;x=a=b",
]
VIA_INSERTS = (" ", "  ", "\t", ",", '"', ";", "=", ":", "/", "[", "]", "%", "é", "\x7f", "A", "")


def test_the_c_reader_reads_every_via_it_takes_as_python_does(sip_via: ViaReader) -> None:
    """Every via-parm of the torture corpus and the usual ones, and 60 random mutants of each:
    the C reader agrees with Python (or leaves the text to it), and it takes a good share."""
    compared, taken = compare_readers(
        _via_corpus(),
        VIA_INSERTS,
        3581,
        lambda text: via_read_by_c(sip_via, text),
        lambda text: via_read_by(via._read_via, text),
    )
    assert compared > 2000
    assert taken > compared // 5


def test_parse_via_through_the_c_reader_reads_as_python_does(
    sip_via: ViaReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parse_via`'s own use of the C reader, in both passes (see the URIs' test above)."""
    monkeypatch.setattr(via, "SIP_VIA", sip_via)
    for text in _via_corpus():
        assert via_read_by(via.parse_via, text) == via_read_by(via._read_via, text), text


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "SIP/2.0/udp 127.0.0.1:15080;Branch=z9hG4bK-1;rport",
            ("UDP", "127.0.0.1", 15080, (("branch", "z9hG4bK-1"), ("rport", None))),
        ),
        ("SIP/2.0/WSS edge.example.com", ("WSS", "edge.example.com", None, ())),
    ],
)
def test_a_plain_via_is_read_in_c_into_the_vias_arguments(
    sip_via: ViaReader, text: str, parts: ViaParts
) -> None:
    assert sip_via(text) == parts


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 /UDP host",  # spaces around the slashes
        "SIP/2.0/UDP  host",
        "SIP/2.0/UDP host ;branch=x",
        "SIP/2.0/UDP host;branch=a b",
        "SIP/2.0/UDP\thost",
        "SIP/3.0/UDP host",
        "sip/2.0/UDP host",
        "SIP/2.0/U-DP host",
        "SIP/2.0/UDP [::1]:5060",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;",
        "SIP/2.0/UDP host;branch=",  # an empty value: a Via refuses it, a URI does not
        "SIP/2.0/UDP host;=x",
        'SIP/2.0/UDP host;x="a"',
        "SIP/2.0/UDP host;branch=z9, SIP/2.0/UDP other",
        "SIP/2.0/UDP hosté",
        "SIP/2.0/UDP;branch=x host",
    ],
)
def test_what_is_not_a_plain_via_is_left_to_python(sip_via: ViaReader, text: str) -> None:
    assert sip_via(text) is None


@pytest.mark.parametrize("argument", [b"SIP/2.0/UDP host", None])
def test_a_wrong_via_argument_is_a_type_error(sip_via: ViaReader, argument: object) -> None:
    with pytest.raises(TypeError):
        sip_via(argument)  # type: ignore[arg-type]


def test_the_via_reader_keeps_no_reference_it_should_not(sip_via: ViaReader) -> None:
    plain, odd = "SIP/2.0/UDP host:5060;branch=z9;rport", "SIP/2.0/UDP [::1]"
    before = sys.getrefcount(plain), sys.getrefcount(odd)
    for _ in range(1000):
        sip_via(plain)
        sip_via(odd)
        sip_via("SIP/2.0/UDP host;x=")
    assert (sys.getrefcount(plain), sys.getrefcount(odd)) == before
