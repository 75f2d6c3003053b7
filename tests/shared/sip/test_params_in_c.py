"""The C readers of a Via's branch and a From or To value's tag (`_uri.via_branch`,
`_uri.address_tag`) against the Python ones (`via._branch_param`, `address._tag_param`).

Whatever value the C readers read must come out exactly as the Python readers read it (a
value, or none), and what they do not read, including all that Python refuses, is left to
Python (None). Both passes of the suite run these tests (`tests/shared/sip/accelerators.py`
loads the module in the pure pass).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.sip import address, via
from shared.sip.errors import SipParseError
from tests.shared.sip.accelerators import load
from tests.shared.sip.test_address_in_c import INSERTS as ADDRESS_INSERTS
from tests.shared.sip.test_address_in_c import _corpus as address_corpus
from tests.shared.sip.test_uri_in_c import VIA_INSERTS, _via_corpus, compare_readers

ParamReader = Callable[[str], str | bool | None]
SOURCE = "shared/sip/_uri.c"
PARAM_INSERTS = (";", "=", ";branch=", ";tag=", "TAG", "Branch", "<", ">")


@pytest.fixture(scope="module")
def via_branch() -> ParamReader:
    reader: ParamReader = load(SOURCE).via_branch
    return reader


@pytest.fixture(scope="module")
def address_tag() -> ParamReader:
    reader: ParamReader = load(SOURCE).address_tag
    return reader


def read_by(reader: Callable[[str], str | None], text: str) -> object:
    """What `reader` makes of `text`: the value (None: no such parameter) or its refusal."""
    try:
        return ("read", reader(text))
    except SipParseError as error:
        return ("refused", str(error))


def read_by_c(reader: ParamReader, text: str) -> object | None:
    found = reader(text)
    if found is None:
        return None
    return ("read", None if found is False else found)


def test_the_c_reader_reads_every_branch_it_takes_as_python_does(via_branch: ParamReader) -> None:
    """Every via-parm of the torture corpus and the usual ones, and 60 random mutants of each:
    the C reader agrees with Python (or leaves the text to it), and it takes a good share."""
    compared, taken = compare_readers(
        _via_corpus(),
        VIA_INSERTS + PARAM_INSERTS,
        3261,
        lambda text: read_by_c(via_branch, text),
        lambda text: read_by(via._branch_param, text),
    )
    assert compared > 2000
    assert taken > compared // 2


def test_the_c_reader_reads_every_tag_it_takes_as_python_does(address_tag: ParamReader) -> None:
    compared, taken = compare_readers(
        address_corpus(),
        ADDRESS_INSERTS + PARAM_INSERTS,
        3263,
        lambda text: read_by_c(address_tag, text),
        lambda text: read_by(address._tag_param, text),
    )
    assert compared > 5000
    assert taken > compared // 3


def test_branch_of_and_tag_of_through_the_c_readers_read_as_python_does(
    via_branch: ParamReader, address_tag: ParamReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readers' own use of the C ones, in both passes: pure Python is given them here, so
    a slip in how their answers are taken fails in the pass mutation testing runs."""
    monkeypatch.setattr(via, "VIA_BRANCH", via_branch)
    monkeypatch.setattr(address, "ADDRESS_TAG", address_tag)
    for text in _via_corpus():
        assert read_by(via.branch_of, text) == read_by(via._branch_param, text), text
    for text in address_corpus():
        assert read_by(address.tag_of, text) == read_by(address._tag_param, text), text


@pytest.mark.parametrize(
    ("text", "branch"),
    [
        ("SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport", "z9hG4bK1"),
        ("SIP/2.0/UDP h;rport;BRANCH=x=y", "x=y"),
        ("SIP/2.0/UDP h;branch", ""),
        ("SIP/2.0/UDP h;branch=a;branch=b", "a"),  # the first, as Python reads it
        ("SIP/2.0/UDP h", False),
        ("SIP/2.0/UDP h;branchx=1;xbranch=2;brancH", ""),
        ("SIP/2.0/UDP h;received=192.0.2.1", False),
        ("SIP/2.0/UDP h;branch=a;", None),  # refused by Python: a parameter without a name
        ("SIP/2.0/UDP h;branch=", None),  # refused: an empty value
        ("SIP/2.0/UDP h;=a;branch=b", None),
        ("SIP/2.0/UDP h; branch=a", None),  # blanks, quotes, non-ASCII: Python reads them
        ('SIP/2.0/UDP h;branch="a"', None),
        ("SIP/2.0/UDP h;branch=é", None),
    ],
)
def test_a_branch_is_read_in_c_or_left_to_python(
    via_branch: ParamReader, text: str, branch: str | bool | None
) -> None:
    assert via_branch(text) == branch
    assert type(via_branch(text)) is type(branch)


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("<sip:a@b>;tag=x", "x"),
        ("<sip:a@b>", False),
        ("sip:a@b;tag=1;x", "1"),
        ("sip:a@b", False),
        ("<sip:a@b;tag=no>;TAG=yes", "yes"),  # the URI's parameters are not the header's
        ("Alice <sip:a@b>;tag", ""),
        ("<sip:a@b>;x=1", False),
        ('"Alice" <sip:a@b>;tag=x', None),  # a quoted name may hold `<`, `>`, `;`
        ("<sip:a@b;tag=1", None),  # no `>`: refused by Python
        (" <sip:a@b>;tag=1", None),  # Python strips first
        ("<sip:a@b>;tag=1\t", None),
        ("<sip:a@b> ;tag=1", None),
        ("<sip:a@b>;tag=", None),
        ("<sip:a@b>x;tag=1", None),  # text before the parameters: refused by Python
        ("", None),
    ],
)
def test_a_tag_is_read_in_c_or_left_to_python(
    address_tag: ParamReader, text: str, tag: str | bool | None
) -> None:
    assert address_tag(text) == tag
    assert type(address_tag(text)) is type(tag)


def test_the_c_readers_take_text_only(via_branch: ParamReader, address_tag: ParamReader) -> None:
    with pytest.raises(TypeError, match="via_branch"):
        via_branch(b"SIP/2.0/UDP h;branch=a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address_tag"):
        address_tag(None)  # type: ignore[arg-type]
