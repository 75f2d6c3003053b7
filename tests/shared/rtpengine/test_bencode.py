"""Bencode: what we write, and every malformed input refused with a ``BencodeError``."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.rtpengine.bencode import (
    MAX_DEPTH,
    MAX_ITEMS,
    BencodeError,
    Encodable,
    Value,
    decode,
    encode,
)
from tests.examples import examples

values: st.SearchStrategy[Value] = st.recursive(
    st.integers(min_value=-(2**63), max_value=2**63) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def test_encode_writes_the_canonical_form_with_sorted_keys() -> None:
    message: dict[str, Encodable] = {
        "sdp": "v=0",
        "call-id": b"abc",
        "flags": ["trust-address"],
        "n": -3,
    }
    assert encode(message) == b"d7:call-id3:abc5:flagsl13:trust-addresse1:ni-3e3:sdp3:v=0e"


def test_encode_refuses_what_bencode_cannot_say() -> None:
    with pytest.raises(TypeError):
        encode(True)
    with pytest.raises(TypeError):
        encode(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode({1: "x"})  # type: ignore[dict-item]


def test_decode_reads_keys_in_any_order() -> None:
    """rtpengine writes its keys in insertion order, not sorted."""
    assert decode(b"d6:result2:ok3:sdp3:v=0e") == {"result": b"ok", "sdp": b"v=0"}
    assert decode(b"d3:sdp3:v=06:result2:oke") == {"result": b"ok", "sdp": b"v=0"}


@given(values)
@settings(max_examples=examples(300))
def test_decode_reads_back_what_encode_writes(value: Value) -> None:
    assert decode(encode(value)) == value


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "ends"),
        (b"i12", "without"),
        (b"i012e", "non-canonical"),
        (b"i-0e", "non-canonical"),
        (b"i-e", "bad number"),
        (b"i1x2e", "bad number"),
        (b"i" + b"9" * 30 + b"e", "too long"),
        (b"03:abc", "non-canonical"),
        (b"5:abc", "past the end"),
        (b"3abc", "without"),
        (b"l1:a", "ends"),
        (b"d1:ae", "key without value"),
        (b"di1e1:ae", "key is not a string"),
        (b"d1:\xff1:ae", "not UTF-8"),
        (b"d1:a1:b1:a1:ce", "duplicate"),
        (b"e", "unexpected"),
        (b"x", "unexpected"),
        (b"1:a1:b", "after the value"),
        (b"i1e ", "after the value"),
    ],
)
def test_decode_refuses_malformed_input_saying_why(data: bytes, says: str) -> None:
    with pytest.raises(BencodeError, match=says):
        decode(data)


def test_decode_refuses_nesting_past_the_bound_without_recursing() -> None:
    decode(b"l" * MAX_DEPTH + b"e" * MAX_DEPTH)
    with pytest.raises(BencodeError, match="nesting deeper"):
        decode(b"l" * (MAX_DEPTH + 1) + b"e" * (MAX_DEPTH + 1))
    with pytest.raises(BencodeError, match="nesting deeper"):
        decode(b"l" * 100_000)


def test_decode_refuses_more_values_than_the_bound() -> None:
    decode(b"l" + b"i0e" * (MAX_ITEMS - 1) + b"e")
    with pytest.raises(BencodeError, match="more than"):
        decode(b"l" + b"i0e" * MAX_ITEMS + b"e")


@given(st.binary(max_size=60))
@settings(max_examples=examples(500))
def test_decode_of_any_bytes_returns_or_raises_bencode_error(data: bytes) -> None:
    with contextlib.suppress(BencodeError):
        decode(data)
