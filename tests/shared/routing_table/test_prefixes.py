"""The prefix table against a brute-force longest-prefix matcher, on random tables and edits."""

from __future__ import annotations

import ctypes
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.routing_table.prefix_layout import FIRST, MAX_CODE, MAX_TAG, NONE, TAG_MASK, leaf_code
from shared.routing_table.prefixes import PrefixTable
from tests.examples import examples

prefixes = st.text(alphabet="0129", max_size=9)
numbers = st.text(alphabet="0129", max_size=12)
edits = st.lists(st.tuples(prefixes, st.booleans()), max_size=300)


def brute_force(table: dict[str, str], number: str) -> str | None:
    matching = [prefix for prefix in table if number.startswith(prefix)]
    return table[max(matching, key=len)] if matching else None


def table_of(entries: dict[str, str]) -> PrefixTable[str]:
    table: PrefixTable[str] = PrefixTable()
    table.bulk(entries.items())
    return table


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(prefixes, st.just(""), max_size=400), st.lists(numbers, max_size=50))
def test_bulk_load_matches_brute_force(keys: dict[str, str], queries: list[str]) -> None:
    entries = {prefix: f"{prefix}=v" for prefix in keys}
    table = table_of(entries)
    for number in [*queries, *entries, *(prefix + "0" for prefix in entries)]:
        assert table.find(number) == brute_force(entries, number)


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(prefixes, st.just(""), max_size=50), edits, st.lists(numbers, max_size=50))
def test_edits_match_brute_force(
    keys: dict[str, str], changes: list[tuple[str, bool]], queries: list[str]
) -> None:
    """Adds, replacements and removals (growing the head on the way) keep every slot right."""
    entries = {prefix: f"{prefix}=v" for prefix in keys}
    table = table_of(entries)
    for step, (prefix, add) in enumerate(changes):
        if add:
            entries[prefix] = f"{prefix}={step}"
            table.set(prefix, entries[prefix])
        else:
            entries.pop(prefix, None)
            table.set(prefix, None)
    assert len(table) == len(entries)
    for number in [*queries, *(prefix for prefix, _ in changes)]:
        assert table.find(number) == brute_force(entries, number)


def test_chain_lists_shorter_prefixes_longest_first() -> None:
    table = table_of({"": "=a", "14": "14=b", "1407": "1407=c", "14075": "14075=d"})
    assert list(table.chain("14075551234", below=5)) == ["1407=c", "14=b", "=a"]
    assert list(table.chain("14", below=9)) == ["14=b", "=a"]


def test_a_large_table_uses_the_widest_head_and_deep_nodes() -> None:
    entries = {f"{n:07d}": f"{n:07d}=v" for n in range(0, 10**7, 70)}
    entries["1"] = "1=v"
    table = table_of(entries)
    assert table.find("00000701234") == "0000070=v"
    assert table.find("00000711234") is None
    assert table.find("19999991234") == "1=v"
    assert table.find("123") == "1=v"


def test_rests_either_side_of_the_integer_read_at_the_widest_head() -> None:
    """Head 6: rests of up to 12 digits come from the number's first 18 digits read as an
    integer, longer ones are compared as strings; numbers shorter or longer than 18."""
    entries = {f"{n:06d}": f"{n:06d}=v" for n in range(0, 10**6, 7)}
    deep = ["123456789012345678", "1234567890123456789", "12345678901234567", "1234567"]
    entries |= {prefix: f"{prefix}=v" for prefix in deep}
    table = table_of(entries)
    for number in [
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890123",
        "1234567890123456788",
        "12345678901234567",
        "1234567890123456",
        "1234567",
        "123456",
    ]:
        assert table.find(number) == brute_force(entries, number)


long_prefixes = st.one_of(
    prefixes,
    st.text(alphabet="019", min_size=12, max_size=20),  # rests about LONG_KEY digits long
    st.text(alphabet="01", min_size=17, max_size=40),  # past a node word's length field
)
long_numbers = st.text(alphabet="019", max_size=42)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.dictionaries(long_prefixes, st.just(""), max_size=60),
    st.lists(st.tuples(long_prefixes, st.booleans()), max_size=120),
    st.lists(long_numbers, max_size=40),
)
def test_rests_too_long_for_an_integer_word_match_brute_force(
    keys: dict[str, str], changes: list[tuple[str, bool]], queries: list[str]
) -> None:
    """Prefixes of up to 40 digits (rests past LONG_KEY digits are compared as strings,
    numbers past 18 digits are read as an integer in part)."""
    entries = {prefix: f"{prefix}=v" for prefix in keys}
    table = table_of(entries)
    for step, (prefix, add) in enumerate(changes):
        if add:
            entries[prefix] = f"{prefix}={step}"
        else:
            entries.pop(prefix, None)
        table.set(prefix, entries.get(prefix))
    assert len(table) == len(entries)
    for number in [*queries, *entries, *(prefix + "1" for prefix, _ in changes)]:
        assert table.find(number) == brute_force(entries, number)


def test_replacing_a_value_keeps_its_slots_and_removed_codes_are_reused() -> None:
    table = table_of({"1": "1=a", "1407": "1407=b", "14075551": "14075551=c"})
    table.set("1407", "1407=B")
    assert table.find("14079") == "1407=B"
    table.set("14075551", None)
    table.set("9", "9=d")
    assert [table.find(n) for n in ("140755519", "14075551", "95")] == ["1407=B", "1407=B", "9=d"]
    assert len(table.values) == 3


def test_bulk_combines_values_of_a_repeated_prefix() -> None:
    table: PrefixTable[str] = PrefixTable()
    table.bulk([("1", "a"), ("12", "b"), ("1", "c")], lambda old, new: old + new)
    assert (table.find("19"), table.find("123"), table.get("1")) == ("ac", "b", "ac")


def tag(table: PrefixTable[str], number: str) -> int:
    return table.leaf(number) & TAG_MASK


def test_tags_follow_values_and_too_large_ones_read_as_zero() -> None:
    table: PrefixTable[str] = PrefixTable(lambda value: int(value.partition("=")[2]))
    table.bulk([("1", "1=7"), ("14", "14=70000")])
    assert [tag(table, n) for n in ("19", "145")] == [7, 0]
    table.set("1", "1=9")
    assert tag(table, "19") == 9
    assert table.leaf("2") == 0
    assert leaf_code(table.leaf("2")) == NONE


@settings(max_examples=examples(200), deadline=None)
@given(
    st.dictionaries(long_prefixes, st.integers(1, 5), max_size=60),
    st.lists(st.tuples(long_prefixes, st.integers(0, 5)), max_size=150),
    st.lists(long_numbers, max_size=40),
)
def test_every_leaf_carries_the_tag_of_its_value_through_edits(
    keys: dict[str, int], changes: list[tuple[str, int]], queries: list[str]
) -> None:
    """Tags live in the slots and nodes, so a value whose tag changes has them rewritten:
    under short prefixes (many slots, node fallbacks) and deep ones alike. Tag 0 removes."""
    entries = {prefix: f"{prefix}={tag}" for prefix, tag in keys.items()}
    table: PrefixTable[str] = PrefixTable(lambda value: int(value.partition("=")[2]))
    table.bulk(entries.items())
    for prefix, new_tag in changes:
        if new_tag:
            entries[prefix] = f"{prefix}={new_tag}"
        else:
            entries.pop(prefix, None)
        table.set(prefix, entries.get(prefix))
    for number in [*queries, *entries, *(prefix + "1" for prefix, _ in changes)]:
        value = brute_force(entries, number)
        leaf = table.leaf(number)
        assert table.find(number) == value
        assert leaf & TAG_MASK == (0 if value is None else int(value.partition("=")[2]))
        assert (leaf == 0) == (value is None)


class _Buffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.py_object),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


def address_of(buffer: object) -> int:
    """Where an object's buffer starts in memory (CPython's buffer protocol)."""
    view = _Buffer()
    get, release = ctypes.pythonapi.PyObject_GetBuffer, ctypes.pythonapi.PyBuffer_Release
    get.argtypes = [ctypes.py_object, ctypes.POINTER(_Buffer), ctypes.c_int]
    release.argtypes = [ctypes.POINTER(_Buffer)]
    assert get(buffer, ctypes.byref(view), 0) == 0
    try:
        return int(view.buf)
    finally:
        release(ctypes.byref(view))


def test_every_slot_starts_on_a_16_byte_boundary() -> None:
    """So a slot's two words share a cache line (the table counts on one read per lookup)."""
    for size in (3, 300, 30_000):
        table = table_of({f"{n:05d}": "v" for n in range(size)})
        assert (address_of(table._slots) + 8 * FIRST) % 16 == 0


def test_tags_up_to_the_largest_are_kept_unsigned() -> None:
    """Tags are target-list numbers: past 32,767 lists they must not wrap or overflow."""
    table: PrefixTable[str] = PrefixTable(lambda value: int(value.partition("=")[2]))
    table.bulk([("1", "1=40000"), ("14", f"14={MAX_TAG}"), ("15", f"15={MAX_TAG + 1}")])
    assert [tag(table, n) for n in ("19", "145", "155")] == [40000, MAX_TAG, 0]
    table.set("2", "2=32768")
    assert tag(table, "29") == 32768


def test_bulk_keeps_the_last_value_of_a_repeated_prefix_without_combine() -> None:
    table: PrefixTable[str] = PrefixTable()
    table.bulk([("1", "a"), ("12", "b"), ("1", "c")])
    assert (table.find("19"), table.find("123"), len(table)) == ("c", "b", 2)


def test_bulk_into_a_table_that_has_prefixes_is_refused() -> None:
    table = table_of({"1": "a"})
    with pytest.raises(ValueError, match=r"^bulk needs an empty table$"):
        table.bulk([("2", "b")])


def test_a_long_prefix_set_first_into_a_fresh_table_matches() -> None:
    """A rest too long for a node word goes to the strings kept beside the nodes, which
    exist before any rebuild."""
    table: PrefixTable[str] = PrefixTable()
    table.set("123456789012345", "deep")
    assert [table.find(n) for n in ("1234567890123456", "123456789012344")] == ["deep", None]


def test_the_last_code_is_given_and_the_next_prefix_refused() -> None:
    """Codes run up to MAX_CODE (the leaf's code field holds code + 1): the table is made to
    look full by its per-code arrays, not by 16 million prefixes."""
    table = table_of({"1": "a"})
    table.values = [None] * MAX_CODE
    table._tags = array("H", [0]) * MAX_CODE
    table._lengths = array("b", [-1]) * MAX_CODE
    table.set("2", "last")
    assert (table.find("29"), leaf_code(table.leaf("29"))) == ("last", MAX_CODE)
    with pytest.raises(OverflowError, match=f"at most {MAX_CODE + 1} prefixes"):
        table.set("3", "one too many")
