"""The SIP URI, Via and address readers in C (`_uri.c`), present only in the compiled build."""

_Params = tuple[tuple[str, str | None], ...]
_SipUriParts = tuple[
    str, str | None, str | None, int | None, _Params, tuple[tuple[str, str], ...], str
]

def sip_uri(text: str, /) -> _SipUriParts | None:
    """A plain `sip:`/`sips:` URI's `SipUri` arguments (host, user, password, port, params,
    headers, scheme), or None: `uri.parse_uri` reads it instead."""

def sip_via(text: str, /) -> tuple[str, str, int | None, _Params] | None:
    """A plain via-parm's `Via` arguments (transport, host, port, params; its protocol SIP/2.0),
    or None: `via.parse_via` reads it instead."""

def sip_address(text: str, /) -> tuple[str | None, _SipUriParts, _Params] | None:
    """A plain name-addr's or addr-spec's display name, `SipUri` arguments and header
    parameters, or None: `address.parse_address` reads it instead."""

def via_branch(text: str, /) -> str | bool | None:
    """A via-parm's `branch` parameter ("" for one without a value), False for none, or None:
    `via.branch_of` reads it instead."""

def address_tag(text: str, /) -> str | bool | None:
    """A From or To value's `tag` parameter, False for none, or None: `address.tag_of` reads
    it instead."""
