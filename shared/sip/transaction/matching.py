"""Transaction keys: which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3).

A key is a tuple so the table is a plain dict lookup.  Requests whose branch
lacks the RFC 3261 magic cookie come from RFC 2543 peers and are keyed by the
fields §17.2.3 lists instead; the To tag is left out of that key because it
differs between an INVITE and its ACK, and is checked after the lookup.
"""

from __future__ import annotations

from shared.sip.branch import is_rfc3261_branch
from shared.sip.message import Request, Response

ClientKey = tuple[str, str]
ServerKey = tuple[str | int | None, ...]


def client_key(branch: str, method: str) -> ClientKey:
    """Client transactions are ours, so their branch is unique by construction."""
    return (branch, method)


def response_key(response: Response) -> ClientKey | None:
    """The client transaction a response belongs to, or None if it names none."""
    branch = response.top_branch
    if not branch:
        return None
    return (branch, response.cseq.method)


def server_key(request: Request, method: str | None = None) -> ServerKey:
    """The server transaction key of `request`, as if its method were `method`.

    ACK shares its INVITE's transaction; CANCEL has its own, and a caller
    looking for the INVITE a CANCEL refers to passes `method="INVITE"`.
    """
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    branch = via.branch
    if is_rfc3261_branch(branch):
        return ("3261", branch, via.host.lower(), via.port, method)
    return (
        "2543",
        request.uri_text,
        request.from_tag,
        request.call_id,
        request.cseq.seq,
        request.header("via"),
        method,
    )


def is_rfc2543(key: ServerKey) -> bool:
    return key[0] == "2543"
