"""Requests and responses: what each kind of start line adds to a `Message` (RFC 3261 §7.1, §7.2).

A request carries a method and a Request-URI, a response a status code and a
reason phrase; both are built from (name, value) header pairs or made by the
readers from received bytes, and both copy themselves for a forking proxy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shared.sip._fields import header_lists
from shared.sip._writers import Message
from shared.sip.errors import SipParseError
from shared.sip.uri import SipUri, Uri, parse_uri

SIP_VERSION: Final = "SIP/2.0"


class Request(Message):
    """A SIP request.  `method` is case-sensitive as RFC 3261 says (`INVITE` ≠ `invite`)."""

    __slots__ = ("_uri", "method", "uri_text")

    method: str
    uri_text: str
    """The Request-URI exactly as received (or as last set)."""

    def __init__(
        self,
        method: str,
        uri_text: str,
        *,
        keys: list[str],
        lines: list[bytes],
        body: bytes = b"",
        wire: bytes | None = None,
        start: bytes | None = None,
    ) -> None:
        """`start`: the request line as received, when parsing (saves re-encoding it)."""
        if start is None:
            start = f"{method} {uri_text} {SIP_VERSION}".encode()
        super().__init__(start, keys, lines, body, wire)
        self.method = method
        self.uri_text = uri_text
        self._uri: Uri | None = None

    @classmethod
    def build(
        cls, method: str, uri: Uri | str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> Request:
        """A new request from (name, value) header pairs; Content-Length is added."""
        keys, lines = header_lists(headers)
        return cls(method, str(uri), keys=keys, lines=lines, body=body)

    @property
    def uri(self) -> Uri:
        """The parsed Request-URI; a SIP URI carrying headers is rejected (RFC 4475 §3.1.2.11)."""
        uri = self._uri
        if uri is None:
            uri = parse_uri(self.uri_text)
            if isinstance(uri, SipUri) and uri.headers:
                raise SipParseError("Request-URI must not contain headers")
            self._uri = uri
        return uri

    def set_uri(self, uri: Uri | str) -> None:
        """Rewrite the Request-URI (strict-route fix-up, registrar lookup, gateway routing)."""
        self.uri_text = str(uri)
        self._start = f"{self.method} {self.uri_text} {SIP_VERSION}".encode()
        self._uri = None
        self._edited()

    def validate(self) -> None:
        """`Message.validate`, plus the Request-URI and CSeq method matching the request line."""
        super().validate()
        self._validate_request_line()

    def validate_for_proxy(self) -> None:
        """What a proxy checks before taking the request on, raising `SipParseError`.

        RFC 3261 §16.3 step 1: what the proxy uses must be well-formed, anything
        else is ignored and forwarded untouched.  So: what `validate` checks of the
        required headers, every Via (loop detection reads them all, responses go
        back along them), the Request-URI and CSeq method, the Contact (the
        edge rewrites a NAT'd phone's, once past this check, and a REGISTER's
        are the registrar's bindings: RFC 4475 §3.1.2.13), a Date (§3.1.2.12
        has a proxy refuse a bad one) and a REGISTER's Expires; not the Route
        and Record-Route values (the proxy parses those when it reads them), nor
        Via ttl/rport, nor a non-REGISTER's Expires, nor the option-tag lists
        (Proxy-Require is judged by `checks.check_proxy_request`).
        """
        self._validate_fields()
        _ = self.contacts
        if self.method == "REGISTER":
            _ = self.expires
        self._validate_date()
        self._validate_request_line()

    def _validate_request_line(self) -> None:
        _ = self.uri
        if self.cseq.method != self.method:
            raise SipParseError("CSeq method does not match the request method")

    def copy(self) -> Request:
        clone = Request(
            self.method, self.uri_text, keys=self._keys.copy(), lines=self._lines.copy(),
            body=self._body, wire=self._wire, start=self._start,
        )  # the start line's fields, then the copied parts  # fmt: skip
        self._copy_parsed(clone)
        clone._uri = self._uri
        return clone

    def forget_parsed(self) -> None:
        super().forget_parsed()
        self._uri = None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    status: int
    reason: str

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        keys: list[str],
        lines: list[bytes],
        body: bytes = b"",
        wire: bytes | None = None,
        start: bytes | None = None,
    ) -> None:
        """`start`: the status line as received, when parsing (saves re-encoding it)."""
        if start is None:
            start = f"{SIP_VERSION} {status} {reason}".encode()
        super().__init__(start, keys, lines, body, wire)
        self.status = status
        self.reason = reason

    @classmethod
    def build(
        cls, status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> Response:
        """A new response from (name, value) header pairs; Content-Length is added."""
        keys, lines = header_lists(headers)
        return cls(status, reason, keys=keys, lines=lines, body=body)

    def copy(self) -> Response:
        clone = Response(
            self.status, self.reason, keys=self._keys.copy(), lines=self._lines.copy(),
            body=self._body, wire=self._wire, start=self._start,
        )  # the start line's fields, then the copied parts  # fmt: skip
        self._copy_parsed(clone)
        return clone

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
