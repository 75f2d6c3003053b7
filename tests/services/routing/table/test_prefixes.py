"""The prefix table against a brute-force longest-prefix matcher, on random tables and edits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.routing.table.prefixes import PrefixTable

prefixes = st.text(alphabet="0129", max_size=9)
numbers = st.text(alphabet="0129", max_size=12)
edits = st.lists(st.tuples(prefixes, st.booleans()), max_size=300)


def brute_force(table: dict[str, str], number: str) -> str | None:
    matching = [prefix for prefix in table if number.startswith(prefix)]
    return table[max(matching, key=len)] if matching else None


def table_of(entries: dict[str, str]) -> PrefixTable[str]:
    table: PrefixTable[str] = PrefixTable(lambda value: len(value.partition("=")[0]))
    table.bulk(entries.items())
    return table


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(prefixes, st.just(""), max_size=400), st.lists(numbers, max_size=50))
def test_bulk_load_matches_brute_force(keys: dict[str, str], queries: list[str]) -> None:
    entries = {prefix: f"{prefix}=v" for prefix in keys}
    table = table_of(entries)
    for number in [*queries, *entries, *(prefix + "0" for prefix in entries)]:
        assert table.find(number) == brute_force(entries, number)


@settings(max_examples=300, deadline=None)
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
