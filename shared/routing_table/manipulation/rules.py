"""Header manipulation rules as data: validated when written, so applying them cannot fail.

Everything an operator can express is checked up front: header names are
tokens, values carry no line break, regexes compile and their replacement
templates reference existing groups, and no rule can touch a header the
transaction and dialog layers depend on (`PROTECTED_HEADERS`): changing Via,
Call-ID, CSeq, From/To tags, Content-Length, Max-Forwards or the route set
would break matching of responses, CANCELs and in-dialog requests.  From and
To are changed only through `set_from`/`set_to`, which keep the tag.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from shared.model import InputModel
from shared.sip.headers import COMPACT_FORMS, header_key

PROTECTED_HEADERS: Final = frozenset(
    {
        "via",
        "call-id",
        "cseq",
        "from",
        "to",
        "content-length",
        "max-forwards",
        "route",
        "record-route",
    }
)
_PROTECTED_SPELLINGS: Final = PROTECTED_HEADERS | {
    short for short, long in COMPACT_FORMS.items() if long in PROTECTED_HEADERS
}
_TOKEN: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_MAX_PATTERN: Final = 256
_MAX_VALUE: Final = 1024
_USER: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/#%]*")

Scope = Literal["source_group", "rule", "gateway", "dispatcher_set"]
SCOPE_ORDER: Final[dict[str, int]] = {
    "source_group": 0,
    "rule": 1,
    "gateway": 2,
    "dispatcher_set": 2,
}
"""Sets apply in this order: who calls, then the route chosen, then where the branch goes."""


def _compile(pattern: str) -> re.Pattern[str]:
    if len(pattern) > _MAX_PATTERN:
        raise ValueError(f"regex longer than {_MAX_PATTERN} characters")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regex {pattern!r}: {error}") from None


def _check_replacement(regex: re.Pattern[str], replacement: str) -> None:
    """Python parses the template before searching: an empty subject checks the group refs."""
    _check_value(replacement)
    try:
        regex.sub(replacement, "")
    except (re.error, IndexError) as error:
        raise ValueError(f"invalid replacement {replacement!r}: {error}") from None


def _check_value(value: str) -> None:
    if len(value) > _MAX_VALUE:
        raise ValueError(f"value longer than {_MAX_VALUE} characters")
    if not value.isprintable():
        raise ValueError("value must not contain line breaks or control characters")


def _check_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid header name")
    if header_key(name) in PROTECTED_HEADERS:
        raise ValueError(
            f"header {name!r} is protected: changing it would break transactions or dialogs"
        )
    return name


class _Rule(InputModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _NamedRule(_Rule):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _check_name(name)


class AddHeader(_NamedRule):
    """Add a header field (at the end, or above the existing ones of that name)."""

    action: Literal["add_header"] = "add_header"
    value: str
    first: bool = False

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        _check_value(value)
        return value


class RemoveHeader(_Rule):
    """Remove every field of header `name`, or of every header whose name matches `pattern`.

    The pattern is searched, case-insensitively, in the long lower-case name
    (`x-foo`, `p-asserted-identity`); it must not match a protected header.
    """

    action: Literal["remove_header"] = "remove_header"
    name: str | None = None
    pattern: str | None = None
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.name is None) == (self.pattern is None):
            raise ValueError("give exactly one of name or pattern")
        if self.name is not None:
            _check_name(self.name)
        else:
            assert self.pattern is not None
            regex = _compile(f"(?i:{self.pattern})")
            hit = sorted(name for name in _PROTECTED_SPELLINGS if regex.search(name))
            if hit:
                raise ValueError(f"pattern {self.pattern!r} matches protected headers {hit}")
            self._regex = regex
        return self

    @property
    def regex(self) -> re.Pattern[str] | None:
        return self._regex


class ReplaceHeader(_NamedRule):
    """Replace the value of every field of `name`: wholly (`value`), or by regex substitution.

    Absent headers stay absent (use `add_header`).  `replacement` may use
    back-references (`\\1`, `\\g<name>`).
    """

    action: Literal["replace_header"] = "replace_header"
    value: str | None = None
    pattern: str | None = None
    replacement: str | None = None
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if self.value is not None:
            if self.pattern is not None or self.replacement is not None:
                raise ValueError("give either value, or pattern and replacement")
            _check_value(self.value)
            return self
        if self.pattern is None or self.replacement is None:
            raise ValueError("give either value, or pattern and replacement")
        self._regex = _compile(self.pattern)
        _check_replacement(self._regex, self.replacement)
        return self

    @property
    def regex(self) -> re.Pattern[str] | None:
        return self._regex


class RewriteUser(_Rule):
    """Rewrite the Request-URI user (the dialled number): strip, then substitute, then prefix."""

    action: Literal["rewrite_ruri_user"] = "rewrite_ruri_user"
    strip: int = Field(default=0, ge=0, le=32)
    pattern: str | None = None
    replacement: str | None = None
    prefix: str = Field(default="", max_length=32)
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if (self.pattern is None) != (self.replacement is None):
            raise ValueError("pattern and replacement go together")
        if self.pattern is not None and self.replacement is not None:
            self._regex = _compile(self.pattern)
            _check_replacement(self._regex, self.replacement)
        if not _USER.fullmatch(self.prefix):
            raise ValueError(f"prefix {self.prefix!r} has characters not allowed in a URI user")
        if not (self.strip or self._regex or self.prefix):
            raise ValueError("the rule changes nothing: give strip, pattern or prefix")
        return self

    @property
    def regex(self) -> re.Pattern[str] | None:
        return self._regex


class SetParty(_Rule):
    """Set the display name and/or the URI user of From or To; the tag is kept."""

    action: Literal["set_from", "set_to"]
    display_name: str | None = Field(default=None, max_length=128)
    user: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if self.display_name is None and self.user is None:
            raise ValueError("give display_name, user or both")
        if self.display_name is not None:
            _check_value(self.display_name)
        if self.user is not None and not _USER.fullmatch(self.user):
            raise ValueError(f"user {self.user!r} has characters not allowed in a URI user")
        return self


Rule = Annotated[
    AddHeader | RemoveHeader | ReplaceHeader | RewriteUser | SetParty,
    Field(discriminator="action"),
]


class Attachment(InputModel):
    """Where a rule set hangs: a source group, a routing rule, a gateway or a dispatcher set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Scope
    id: str = Field(min_length=1, max_length=64)


class RuleSet(InputModel):
    """An ordered list of rules attached to one place; JSON body of the API later."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    scope: Attachment
    description: str = ""
    rules: tuple[Rule, ...] = Field(min_length=1, max_length=64)
