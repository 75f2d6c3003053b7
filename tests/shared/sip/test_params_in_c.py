"""The C readers of a Via's branch and a From or To value's tag (`_uri.via_branch`,
`_uri.address_tag`) against the Python ones (`via._branch_param`, `address._tag_param`).

Whatever value the C readers read must come out exactly as the Python readers read it (a
value, or none), and what they do not read, including all that Python refuses, is left to
Python (None). Both passes of the suite run these tests (`tests/shared/sip/accelerators.py`
loads the module in the pure pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from shared.sip import address, via
from shared.sip.errors import SipParseError
from shared.sip.params import ParamReader
from tests.shared.sip.accelerators import load
from tests.shared.sip.test_address_in_c import INSERTS as ADDRESS_INSERTS
from tests.shared.sip.test_address_in_c import _corpus as address_corpus
from tests.shared.sip.test_uri_in_c import VIA_INSERTS, _via_corpus, compare_readers

SOURCE = "shared/sip/_uri.c"
PARAM_INSERTS = (";", "=", ";branch=", ";tag=", "TAG", "Branch", "<", ">")


@pytest.fixture(scope="module")
def in_c() -> dict[str, ParamReader]:
    """The C readers by the parameter they read."""
    module = load(SOURCE)
    return {"branch": module.via_branch, "tag": module.address_tag}


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


class Differential(NamedTuple):
    """A reader's corpus, what its mutants insert, the Python reader, and how many texts the
    comparison must see at least and the share of them the C must read (more than 1/share)."""

    corpus: Callable[[], list[str]]
    inserts: tuple[str, ...]
    by_python: Callable[[str], str | None]
    least: int
    share: int


@pytest.mark.parametrize(
    ("param", "case"),
    [
        ("branch", Differential(_via_corpus, VIA_INSERTS, via._branch_param, 2000, 2)),
        ("tag", Differential(address_corpus, ADDRESS_INSERTS, address._tag_param, 5000, 3)),
    ],
)
def test_the_c_reader_reads_every_value_it_takes_as_python_does(
    in_c: dict[str, ParamReader], param: str, case: Differential
) -> None:
    """Every via-parm or address of the torture corpus and the usual ones, and 60 random
    mutants of each: the C reader agrees with Python (or leaves the text to it), and it
    takes a good share."""
    compared, taken = compare_readers(
        case.corpus(),
        case.inserts + PARAM_INSERTS,
        3261,
        lambda text: read_by_c(in_c[param], text),
        lambda text: read_by(case.by_python, text),
    )
    assert compared > case.least
    assert taken > compared // case.share


def test_branch_of_and_tag_of_through_the_c_readers_read_as_python_does(
    in_c: dict[str, ParamReader], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readers' own use of the C ones, in both passes: pure Python is given them here, so
    a slip in how their answers are taken fails in the pass mutation testing runs."""
    monkeypatch.setattr(via, "VIA_BRANCH", in_c["branch"])
    monkeypatch.setattr(address, "ADDRESS_TAG", in_c["tag"])
    for text in _via_corpus():
        assert read_by(via.branch_of, text) == read_by(via._branch_param, text), text
    for text in address_corpus():
        assert read_by(address.tag_of, text) == read_by(address._tag_param, text), text


@pytest.mark.parametrize(
    ("param", "text", "read"),
    [
        ("branch", "SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport", "z9hG4bK1"),
        ("branch", "SIP/2.0/UDP h;rport;BRANCH=x=y", "x=y"),
        ("branch", "SIP/2.0/UDP h;branch", ""),
        ("branch", "SIP/2.0/UDP h;branch=a;branch=b", "a"),  # the first, as Python reads it
        ("branch", "SIP/2.0/UDP h", False),
        ("branch", "SIP/2.0/UDP h;branchx=1;xbranch=2;brancH", ""),
        ("branch", "SIP/2.0/UDP h;received=192.0.2.1", False),
        ("branch", "SIP/2.0/UDP h;branch=a;", None),  # refused: a parameter without a name
        ("branch", "SIP/2.0/UDP h;branch=", None),  # refused: an empty value
        ("branch", "SIP/2.0/UDP h;=a;branch=b", None),
        ("branch", "SIP/2.0/UDP h; branch=a", None),  # blanks, quotes, non-ASCII: Python's
        ("branch", 'SIP/2.0/UDP h;branch="a"', None),
        ("branch", "SIP/2.0/UDP h;branch=é", None),
        ("tag", "<sip:a@b>;tag=x", "x"),
        ("tag", "<sip:a@b>", False),
        ("tag", "sip:a@b;tag=1;x", "1"),
        ("tag", "sip:a@b", False),
        ("tag", "<sip:a@b;tag=no>;TAG=yes", "yes"),  # the URI's parameters are not the header's
        ("tag", "Alice <sip:a@b>;tag", ""),
        ("tag", "<sip:a@b>;x=1", False),
        ("tag", '"Alice" <sip:a@b>;tag=x', None),  # a quoted name may hold `<`, `>`, `;`
        ("tag", "<sip:a@b;tag=1", None),  # no `>`: refused by Python
        ("tag", " <sip:a@b>;tag=1", None),  # Python strips first
        ("tag", "<sip:a@b>;tag=1\t", None),
        ("tag", "<sip:a@b> ;tag=1", None),
        ("tag", "<sip:a@b>;tag=", None),
        ("tag", "<sip:a@b>x;tag=1", None),  # text before the parameters: refused by Python
        ("tag", "", None),
    ],
)
def test_a_parameter_is_read_in_c_or_left_to_python(
    in_c: dict[str, ParamReader], param: str, text: str, read: str | bool | None
) -> None:
    assert in_c[param](text) == read
    assert type(in_c[param](text)) is type(read)


def test_the_c_readers_take_text_only(in_c: dict[str, ParamReader]) -> None:
    with pytest.raises(TypeError, match="via_branch"):
        in_c["branch"](b"SIP/2.0/UDP h;branch=a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address_tag"):
        in_c["tag"](None)  # type: ignore[arg-type]
