"""The header lookups in C (`_scan.key_index`, `key_count`) against `list.index`/`list.count`.

Pure Python looks keys up with the list methods themselves (`_keys`); the C ones must answer
the same for any list and key (a `ValueError` for one not there), and take the memo's keys by
identity and cached hash.  Both passes of the suite run these: the pure pass loads the C
module from the build's file (`tests/shared/sip/accelerators.py`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.sip import _keys, _model, _writers
from shared.sip.errors import SipParseError
from shared.sip.headers import KEY_MEMO
from shared.sip.message import Request, parse_message
from tests.services.edge.policy.support import invite
from tests.shared.sip.accelerators import load
from tests.shared.sip.torture import DATA

Lookup = Callable[..., int]
SOURCE = "shared/sip/_scan.c"


@pytest.fixture(scope="module")
def key_index() -> Lookup:
    lookup: Lookup = load(SOURCE).key_index
    return lookup


@pytest.fixture(scope="module")
def key_count() -> Lookup:
    lookup: Lookup = load(SOURCE).key_count
    return lookup


def _answer(lookup: Callable[..., int], *arguments: object) -> object:
    try:
        return lookup(*arguments)
    except Exception as error:  # the kind of error is the answer compared
        return type(error)


def _key_lists() -> Iterator[list[str]]:
    """The keys of every torture message the readers frame (RFC 4475, RFC 5118 in both line
    endings), as they frame them, and a proxy's INVITE's."""
    files = [*sorted((DATA / "rfc4475").glob("*.dat")), *sorted((DATA / "rfc5118").rglob("*"))]
    corpus = [path.read_bytes() for path in files if path.is_file() and path.suffix != ".tsv"]
    for data in [*corpus, invite()]:
        try:
            yield parse_message(data)._keys
        except SipParseError:
            continue


def test_the_lookups_answer_as_the_list_methods_on_every_torture_message(
    key_index: Lookup, key_count: Lookup
) -> None:
    """Every key the memo holds, two it does not and an equal copy of one, at every start
    (negative ones too) in the keys of every framed torture message."""
    lists = list(_key_lists())  # first: the memo learns the names
    probes = [*set(KEY_MEMO.values()), "x-absent", "", "".join(["v", "ia"])]
    assert len(lists) > 40
    compared = 0
    for keys in lists:
        for key in probes:
            assert key_count(keys, key) == keys.count(key)
            for start in range(-len(keys) - 2, len(keys) + 2):
                expected = _answer(list.index, keys, key, start)
                assert _answer(key_index, keys, key, start) == expected, (keys, key, start)
                compared += 1
            assert _answer(key_index, keys, key) == _answer(list.index, keys, key)
    assert compared > 40_000


def test_an_equal_string_that_is_not_the_memos_is_found_by_equality(key_index: Lookup) -> None:
    """A key built at run time (no hash cached yet, another object) is still the same key."""
    keys = ["via", "from", "to", "call-id", "cseq"]
    built = "".join(["cs", "eq"])
    assert built is not keys[4]
    assert key_index(keys, built) == 4
    assert key_index(["".join(["ca", "ll-id"])], "call-id") == 0
    with pytest.raises(ValueError):
        key_index(keys, "cseq", 5)
    with pytest.raises(ValueError):
        key_index(keys, "via", 2**70)  # clipped, as list.index clips it
    assert key_index(keys, "cseq", -(2**70)) == 4


class Folded(str):
    """A str subclass equal to any casing of itself (its own __eq__)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    __hash__ = str.__hash__


def test_a_subclass_is_compared_by_its_own_equality(key_index: Lookup, key_count: Lookup) -> None:
    """No shortcut for what is not an exact str: a subclass's __eq__ decides, either side."""
    keys = ["via", Folded("CSeq"), "to", "cseq"]
    for key in ("cseq", Folded("CSEQ"), "CSEQ", "to", 5, None):
        assert _answer(key_index, keys, key) == _answer(list.index, keys, key), key
        assert key_count(keys, key) == keys.count(key), key  # type: ignore[arg-type]


class Shrinking(str):
    """Empties the list it is compared in: the lookup must not read past its end."""

    __slots__ = ()
    victim: list[Any] = []  # set by the test

    def __eq__(self, other: object) -> bool:
        Shrinking.victim.clear()
        return False

    __hash__ = str.__hash__


def test_a_list_changed_by_a_comparison_is_not_read_past_its_end(
    key_index: Lookup, key_count: Lookup
) -> None:
    keys: list[str] = [Shrinking("a"), "b", "c"]
    Shrinking.victim = keys
    with pytest.raises(ValueError):
        key_index(keys, "c")
    keys.extend([Shrinking("a"), "b", "c"])
    assert key_count(keys, "c") == 0


class Failing(str):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparison")

    __hash__ = str.__hash__


def test_an_error_in_a_comparison_is_raised(key_index: Lookup, key_count: Lookup) -> None:
    with pytest.raises(RuntimeError):
        key_index(["via", Failing("x")], "to")
    with pytest.raises(RuntimeError):
        key_count([Failing("x")], "to")


@pytest.mark.parametrize(
    "arguments",
    [
        (),
        (["via"],),
        (("via",), "via"),
        ("via", "via"),
        (["via"], "via", "0"),
        (["via"], "via", None),
        (["via"], "via", 0, 0),
    ],
)
def test_a_wrong_call_is_a_type_error(key_index: Lookup, arguments: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        key_index(*arguments)


@pytest.mark.parametrize("arguments", [(), (["via"],), ("via", "via"), (["via"], "via", 0)])
def test_a_wrong_count_call_is_a_type_error(
    key_count: Lookup, arguments: tuple[object, ...]
) -> None:
    with pytest.raises(TypeError):
        key_count(*arguments)


def test_the_lookups_keep_no_reference_they_should_not(
    key_index: Lookup, key_count: Lookup
) -> None:
    keys = _request()._keys
    key, built = keys[-1], "".join(["x-", "absent"])
    before = sys.getrefcount(key), sys.getrefcount(built), sys.getrefcount(keys)
    for _ in range(1000):
        key_index(keys, key)
        with contextlib.suppress(ValueError):
            key_index(keys, built, 1)
        key_count(keys, key)
    assert (sys.getrefcount(key), sys.getrefcount(built), sys.getrefcount(keys)) == before


def test_the_model_uses_them_in_the_compiled_build_only(key_index: Lookup) -> None:
    from shared.extensions import STATE

    compiled = STATE.startswith("compiled")
    assert (_keys.key_index is key_index) == compiled
    assert (_keys.key_index is list.index) != compiled
    assert (_keys.key_count is list.count) != compiled


def test_a_message_read_and_edited_through_the_c_lookups(
    key_index: Lookup, key_count: Lookup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's and the writers' own use of the lookups, in both passes: pure Python is
    given the C ones here (compiled, it has them already), so a slip in how a caller reads
    their answer (a `ValueError` for absent) fails here too (mutation testing runs pure Python)."""
    for module in (_model, _writers):
        monkeypatch.setattr(module, "key_index", key_index)
    monkeypatch.setattr(_model, "key_count", key_count)
    request = _request()
    assert request.header("cseq") == "1 INVITE" and request.header("subject") is None
    assert request.has_header("Max-Forwards") and not request.has_header("route")
    assert request.max_forwards == 70 and request.routes == []
    request.add_header("Route", "<sip:a.example;lr>, <sip:b.example;lr>")
    request.add_header("Route", "<sip:c.example;lr>")
    assert request.headers("route") == [
        "<sip:a.example;lr>",
        "<sip:b.example;lr>",
        "<sip:c.example;lr>",
    ]
    request.pop_route()
    assert [str(route.uri) for route in request.routes] == ["sip:b.example;lr", "sip:c.example;lr"]
    request.set_header("Subject", "one")
    request.add_header("Subject", "two", first=True)
    assert request.field_lines("subject") == [b"Subject: two", b"Subject: one"]
    request.set_header("Subject", "three")
    assert request.headers("subject") == ["three"]
    request.decrement_max_forwards()
    assert request.max_forwards == 69
    copy = request.copy()
    copy.prepend_via("SIP/2.0/UDP edge.example;branch=z9hG4bK-x")
    assert copy.top_via.host == "edge.example" and request.top_via.host != "edge.example"
    assert b"Content-Length: 0" in copy.to_bytes()


def _request() -> Request:
    request = parse_message(invite())
    assert isinstance(request, Request)
    return request
