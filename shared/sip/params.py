"""`;name=value` header parameters (RFC 3261 §25.1 generic-param), shared by Via and addresses."""

from __future__ import annotations

from collections.abc import Callable

from shared.sip.errors import SipParseError

Params = tuple[tuple[str, str | None], ...]
"""Parameters in order as (lower-cased name, value); a flag such as `;lr` has value None.

Values are kept as written, including the quotes of a quoted-string value.
"""


def param_value(params: Params, name: str) -> str | None:
    """The value of `name` ("" for a flag), or None when absent; `name` must be lower-case."""
    for key, value in params:
        if key == name:
            return "" if value is None else value
    return None


ParamReader = Callable[[str], str | bool | None]
"""A C reader of one parameter (`uri.VIA_BRANCH`, `uri.ADDRESS_TAG`): the value, False for
none, or None for text it leaves to Python."""


def read_param(
    text: str, in_c: ParamReader | None, in_python: Callable[[str], str | None]
) -> str | None:
    """One parameter of `text` (`via.branch_of`, `address.tag_of`): by the C reader `in_c`
    when the compiled build has one and it reads `text` (a str, "" for a flag, or False for
    none), else by `in_python`, which reads or refuses whatever the C leaves to it (None)."""
    if in_c is not None:
        found = in_c(text)
        if isinstance(found, str):
            return found
        if found is False:
            return None
    return in_python(text)


def param_of(text: str, name: str, what: str) -> str | None:
    """`param_value(parse_params(text, what), name)`, the same value and refusals, without the
    parameters built when they are plain (no blanks, no quotes): a Via's branch or an
    address's tag is read so for nearly every message, where the other parameters are
    checked but no tuple or lower-cased name is made for them.  `name` must be lower-case
    ASCII (a name of another length is not compared: `str.lower` keeps an ASCII name's)."""
    if text[:1] != ";" or " " in text or "\t" in text or '"' in text:
        return param_value(parse_params(text, what), name)
    found: str | None = None
    size = len(name)
    for piece in text[1:].split(";"):
        key, eq, value = piece.partition("=")
        if not key:
            raise SipParseError(f"malformed {what} parameter")
        if eq and not value:
            raise SipParseError(f"malformed {what} parameter value")
        if found is None and len(key) == size and key.lower() == name:
            found = value if eq else ""
    return found


def parse_params(text: str, what: str) -> Params:
    """Parse `;a=b;c` (whitespace allowed around `;` and `=`); `text` starts with `;` or is empty.

    `what` names the header in errors.  Empty parameters (`;;`) are rejected.
    """
    if " " not in text and "\t" not in text and '"' not in text and text[:1] == ";":
        return _parse_plain(text, what)
    text = text.strip()
    if not text:
        return ()
    if text[0] != ";":
        raise SipParseError(f"malformed {what} (unexpected text before parameters)")
    pieces = _split_semicolons(text[1:], what) if '"' in text else text[1:].split(";")
    params: list[tuple[str, str | None]] = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip()
        if not name or " " in name or "\t" in name:
            raise SipParseError(f"malformed {what} parameter")
        if eq:
            value = value.strip()
            if not value or ((" " in value or "\t" in value) and value[0] != '"'):
                raise SipParseError(f"malformed {what} parameter value")
            params.append((name.lower(), value))
        else:
            params.append((name.lower(), None))
    return tuple(params)


def _parse_plain(text: str, what: str) -> Params:
    """The common case, no whitespace and no quoted values: one split, no stripping."""
    params: list[tuple[str, str | None]] = []
    for piece in text[1:].split(";"):
        name, eq, value = piece.partition("=")
        if not name:
            raise SipParseError(f"malformed {what} parameter")
        if eq and not value:
            raise SipParseError(f"malformed {what} parameter value")
        params.append((name.lower(), value if eq else None))
    return tuple(params)


def _split_semicolons(text: str, what: str) -> list[str]:
    pieces = []
    start = 0
    in_quotes = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == ";":
            pieces.append(text[start:i])
            start = i + 1
        i += 1
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {what}")
    pieces.append(text[start:])
    return pieces


def format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def with_param(params: Params, name: str, value: str | None) -> Params:
    """`params` with `name` replaced in place, or appended when absent."""
    name = name.lower()
    if any(key == name for key, _ in params):
        return tuple((key, value) if key == name else (key, old) for key, old in params)
    return (*params, (name, value))
