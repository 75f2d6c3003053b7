"""Generic `;name=value` header parameters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.sip.errors import SipParseError
from shared.sip.params import format_params, param_of, param_value, parse_params, with_param
from tests.examples import examples


def test_parse_and_format() -> None:
    params = parse_params(' ; Tag = 1 ;lr; name="quoted; value"', "test")
    assert params == (("tag", "1"), ("lr", None), ("name", '"quoted; value"'))
    assert param_value(params, "lr") == ""
    assert param_value(params, "missing") is None
    assert format_params(params) == ';tag=1;lr;name="quoted; value"'
    assert parse_params("", "test") == ()


def test_with_param_replaces_in_place_or_appends() -> None:
    params = (("a", "1"), ("b", None))
    assert with_param(params, "A", "2") == (("a", "2"), ("b", None))
    assert with_param(params, "c", None) == (("a", "1"), ("b", None), ("c", None))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x;a", "malformed thing (unexpected text before parameters)"),
        (";;", "malformed thing parameter"),
        # With whitespace or quotes the general path reads them: the same checks there.
        ("; ;lr", "malformed thing parameter"),
        ("; a b=1", "malformed thing parameter"),
        (";a=", "malformed thing parameter value"),
        (";a=b c", "malformed thing parameter value"),
        (';a="open', "unterminated quoted string in thing"),
    ],
)
def test_malformed(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_params(text, "thing")
    assert caught.value.reason == reason


def test_a_parameter_name_with_a_tab_inside_is_refused() -> None:
    with pytest.raises(SipParseError):
        parse_params(";a\tb=1", "Via")


def test_tabs_around_a_parameter_are_whitespace() -> None:
    assert parse_params(";a\t=\t1", "Via") == parse_params(";a=1", "Via")


def test_an_escaped_quote_right_before_the_closing_one_stays_in_the_value() -> None:
    assert parse_params(';p="a\\"";q=1', "thing") == (("p", '"a\\""'), ("q", "1"))


def param_read_by(text: str, name: str, read: Callable[[str, str, str], str | None]) -> object:
    """What `read(text, name, "Via")` gives: the value, or the refusal's message as a 1-tuple."""
    try:
        return read(text, name, "Via")
    except SipParseError as error:
        return (str(error),)


def by_parsed_params(text: str, name: str, what: str) -> str | None:
    return param_value(parse_params(text, what), name)


PARAM_PIECES = ["tag", "TAG", "Tag", "tagx", "ta", "branch", "lr", "=", "=", ";", ";", "x", "1"]


@settings(max_examples=examples(3000))
@given(
    st.lists(st.sampled_from([*PARAM_PIECES, " ", "\t", '"']), max_size=12),
    st.sampled_from(["tag", "branch", "lr"]),
)
def test_one_parameter_reads_as_the_parsed_parameters_give_it(pieces: list[str], name: str) -> None:
    """`param_of` gives what `param_value(parse_params(...))` gives for any text: the first
    value of the name in any case ("" for a flag), None, or the same refusal; plain text
    takes its own reading, blanks and quotes the parse."""
    text = "".join(pieces)
    assert param_read_by(text, name, param_of) == param_read_by(text, name, by_parsed_params)
