"""What the registrar records: bindings of an address-of-record to contacts (RFC 3261 §10).

:class:`Location` is what an edge needs to reach a registered phone; the
registrar's own :class:`Binding` adds the Call-ID/CSeq it orders REGISTERs by.
Both are pydantic models so that the one definition serves Redis, events and
the HTTP API alike.
"""

from __future__ import annotations

from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict

from shared.registrar.names import check_user
from shared.sip.errors import SipParseError
from shared.sip.uri import SipUri, parse_uri


class Location(BaseModel):
    """One registered contact of an address-of-record, as the edges route to it.

    ``received`` is where the REGISTER really came from (``sip:host:port``, with
    ``;transport=`` unless UDP): a phone behind NAT or on a TCP connection is
    reached there, through ``edge`` (the instance that took the REGISTER, its
    SIP address ``edge_address`` and its ``connection_id`` for streams), not at
    ``contact``. ``path`` holds the Path header values (RFC 3327) in order; a
    request to the contact gets them as its Route set. ``params`` are the
    Contact header parameters other than expires and q (e.g. ``+sip.instance``),
    as written.
    """

    model_config = ConfigDict(frozen=True)

    aor: str
    contact: str
    expires_at: float
    q: float | None = None
    params: str = ""
    path: tuple[str, ...] = ()
    received: str
    transport: str
    edge: str
    edge_address: str | None = None
    connection_id: int | None = None
    user_agent: str | None = None

    def remaining(self, now: float) -> int:
        """Whole seconds left, as a 200 to REGISTER shows it (never negative)."""
        return max(0, round(self.expires_at - now))

    @property
    def priority(self) -> float:
        """The q of a contact that gave none (RFC 3261 §16.6 step 9 leaves it to us): the top."""
        return 1.0 if self.q is None else self.q

    def location(self) -> Location:
        return Location.model_validate(self.model_dump(include=set(Location.model_fields)))


class Binding(Location):
    """A stored binding: the location plus the ordering data of RFC 3261 §10.3 step 7."""

    call_id: str
    cseq: int


def aor_of(uri: SipUri) -> str:
    """The canonical address-of-record for a To URI: ``sip:user@host``, host lower-cased.

    Scheme, port and parameters are dropped (a ``sips:`` AoR is the same
    subscriber); the user part keeps its case, as RFC 3261 §19.1.4 compares it.
    """
    if not uri.user:
        raise SipParseError("address-of-record without a user part", 404)
    return f"sip:{uri.user}@{uri.host.lower()}"


def parse_aor(text: str) -> str:
    """An AoR from the API: ``sip:alice@example.com`` (URL-encoded or not) or ``alice@example.com``.

    Raises ``ValueError`` when it is not a SIP address with a user part the API accepts
    (:func:`shared.registrar.names.check_user`).
    """
    text = unquote(text.strip())
    if not text.lower().startswith(("sip:", "sips:")):
        text = f"sip:{text}"
    try:
        uri = parse_uri(text)
    except SipParseError as error:
        raise ValueError(error.reason) from None
    if not isinstance(uri, SipUri) or not uri.user:
        raise ValueError("an AoR is sip:user@domain")
    check_user(uri.user)
    return aor_of(uri)


def by_priority(bindings: list[Binding]) -> list[Binding]:
    """Highest q first (forking order); the most recently refreshed first among equals."""
    return sorted(bindings, key=lambda b: (-b.priority, -b.expires_at))
