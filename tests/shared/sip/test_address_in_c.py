"""The C address reader (`_uri.sip_address`) against the Python one (`address._read_address`).

Whatever name-addr or addr-spec the C reader reads must come out exactly as the Python reader
reads it, and what it does not read is left to Python (None). Both passes of the suite run
these tests (`tests/shared/sip/accelerators.py` loads the module in the pure pass).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import pytest

from shared.sip import address
from shared.sip.address import Address, AddressParts
from shared.sip.errors import SipParseError
from shared.sip.headers import split_commas
from shared.sip.uri import SipUri
from tests.shared.sip.accelerators import load
from tests.shared.sip.test_uri_in_c import compare_readers
from tests.shared.sip.torture import DATA

AddressReader = Callable[[str], AddressParts | None]
SOURCE = "shared/sip/_uri.c"
ADDRESS_HEADER = re.compile(
    r"^(?:From|f|To|t|Contact|m|Route|Record-Route|Reply-To|Refer-To|r|P-Asserted-Identity)"
    r"[ \t]*:[ \t]*(.*)$",
    re.IGNORECASE | re.MULTILINE,
)


@pytest.fixture(scope="module")
def sip_address() -> AddressReader:
    reader: AddressReader = load(SOURCE).sip_address
    return reader


def read_by(reader: Callable[[str], Address], text: str) -> object:
    """What `reader` makes of `text`: the address's fields with their types and its text, or
    its refusal."""
    try:
        read = reader(text)
    except SipParseError as error:
        return ("refused", str(error))
    uri = read.uri
    fields: tuple[object, ...] = (read.display_name, read.params, type(uri).__name__, str(uri))
    if isinstance(uri, SipUri):
        fields += (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params)
    return (*fields, tuple(map(type, fields)), str(read))


def read_by_c(reader: AddressReader, text: str) -> object | None:
    found = reader(text)
    if found is None:
        return None
    display, parts, params = found
    return read_by(lambda _: Address(SipUri(*parts), display, params), text)


def _corpus() -> list[str]:
    """Every address value of the torture messages (each element of a list), and the usual."""
    found: set[str] = set()
    for path in [*(DATA / "rfc4475").glob("*.dat"), *(DATA / "rfc5118").rglob("*")]:
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for value in ADDRESS_HEADER.findall(text):
                found.add(value.strip())
                try:
                    found.update(split_commas(value))
                except SipParseError:
                    continue
    return sorted(found) + USUAL


USUAL = [
    '"Alice" <sip:alice@10.0.0.5>;tag=a1',
    "<sip:14075551234@127.0.0.1:15062>",
    "<sip:bench@127.0.0.1:15080>;tag=25056c5",
    "sip:caller@127.0.0.1:15080;tag=1234-1",
    "Bob  Jones <SIPS:bob@Biloxi.example.com;Transport=TCP>;Tag=X;expires=3600;q=0.5",
    '"" <sip:a@example.com>',
    '"a;b<c>,d" <sip:a@example.com>',
    "<sip:127.0.0.1:15062;lr;cm-rr=aXk.1234>",
    "  <sip:a@b>  ",
    "<sip:a@b>;x=a=b;flag",
]

INSERTS = (" ", "  ", "\t", '"', "\\", "<", ">", ";", "=", ",", "?", "%", ":", "@", "é", "")


def test_the_c_reader_reads_every_address_it_takes_as_python_does(
    sip_address: AddressReader,
) -> None:
    """Every address of the torture corpus and the usual ones, and 60 random mutants of each:
    the C reader agrees with Python (or leaves the text to it), and it takes a good share."""
    compared, taken = compare_readers(
        _corpus(),
        INSERTS,
        3262,
        lambda text: read_by_c(sip_address, text),
        lambda text: read_by(address._read_address, text),
    )
    assert compared > 5000
    assert taken > compared // 5


def test_parse_address_through_the_c_reader_reads_as_python_does(
    sip_address: AddressReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parse_address`'s own use of the C reader, in both passes: pure Python is given it here,
    so a slip in how its parts become an `Address` fails in the pass mutation testing runs."""
    monkeypatch.setattr(address, "SIP_ADDRESS", sip_address)
    for text in _corpus():
        assert read_by(address.parse_address, text) == read_by(address._read_address, text)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            '"Alice" <sip:alice@10.0.0.5>;tag=a1',
            ("Alice", ("10.0.0.5", "alice", None, None, (), (), "sip"), (("tag", "a1"),)),
        ),
        (
            "Bob  Jones <sip:bob@b.example:5070;lr>",
            ("Bob  Jones", ("b.example", "bob", None, 5070, (("lr", None),), (), "sip"), ()),
        ),
        (
            "sip:bob@b.example;user=phone;Tag=x",
            (
                None,
                ("b.example", "bob", None, None, (), (), "sip"),
                (("user", "phone"), ("tag", "x")),
            ),
        ),
    ],
)
def test_a_plain_address_is_read_in_c_into_its_parts(
    sip_address: AddressReader, text: str, parts: AddressParts
) -> None:
    assert sip_address(text) == parts


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '"Alice \\"A\\"" <sip:a@b>',  # an escape in the display name
        '"unterminated <sip:a@b>',
        '"x" sip:a@b',
        "Bell, Alexander <sip:a@b>",  # not tokens
        "<sip:a@b",  # no closing >
        "<sip:a@b> ;tag=1",  # a blank before the parameters
        '<sip:a@b>;x="y"',
        "<sip:a@b>;;",
        "<sip:a@b>;tag=",
        "<sip:a@b> junk",
        "<tel:+14075551234>",
        "<sip:[::1]>",
        "sip:a@b?subject=x",
        "sip:a@b,c",
        "sip:a@b ;tag=1",
        "\t<sip:a@b>",
        "<sip:a@b>\r\n",
        "<sip:ä@b>",
    ],
)
def test_what_is_not_a_plain_address_is_left_to_python(
    sip_address: AddressReader, text: str
) -> None:
    assert sip_address(text) is None


def test_a_str_subclass_is_left_to_python(sip_address: AddressReader) -> None:
    class Text(str):
        pass

    assert sip_address(Text("<sip:a@b>")) is None


@pytest.mark.parametrize("argument", [b"<sip:a@b>", None, 5])
def test_a_wrong_argument_is_a_type_error(sip_address: AddressReader, argument: object) -> None:
    with pytest.raises(TypeError):
        sip_address(argument)  # type: ignore[arg-type]


def test_the_reader_keeps_no_reference_it_should_not(sip_address: AddressReader) -> None:
    plain, odd = '"Alice" <sip:alice@host:5060;lr>;tag=1', '"A\\"" <sip:a@b>'
    before = sys.getrefcount(plain), sys.getrefcount(odd)
    for _ in range(1000):
        sip_address(plain)
        sip_address(odd)
        sip_address("<sip:a@b>;x=")
        sip_address("<sip:a@b;=x>")
    assert (sys.getrefcount(plain), sys.getrefcount(odd)) == before


def test_parse_address_uses_it_in_the_compiled_build_only() -> None:
    from shared.extensions import STATE

    assert (address.SIP_ADDRESS is not None) == STATE.startswith("compiled")
