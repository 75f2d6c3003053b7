"""The SIP URI and Via readers in C (`_uri.c`), present only in the compiled build."""

def sip_uri(
    text: str, /
) -> (
    tuple[
        str,
        str | None,
        str | None,
        int | None,
        tuple[tuple[str, str | None], ...],
        tuple[tuple[str, str], ...],
        str,
    ]
    | None
):
    """A plain `sip:`/`sips:` URI's `SipUri` arguments (host, user, password, port, params,
    headers, scheme), or None: `uri.parse_uri` reads it instead."""

def sip_via(text: str, /) -> tuple[str, str, int | None, tuple[tuple[str, str | None], ...]] | None:
    """A plain via-parm's `Via` arguments (transport, host, port, params; its protocol SIP/2.0),
    or None: `via.parse_via` reads it instead."""

def sip_address(
    text: str, /
) -> (
    tuple[
        str | None,
        tuple[
            str,
            str | None,
            str | None,
            int | None,
            tuple[tuple[str, str | None], ...],
            tuple[tuple[str, str], ...],
            str,
        ],
        tuple[tuple[str, str | None], ...],
    ]
    | None
):
    """A plain name-addr's or addr-spec's display name, `SipUri` arguments and header
    parameters, or None: `address.parse_address` reads it instead."""
