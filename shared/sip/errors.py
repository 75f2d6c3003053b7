"""The SIP layer's exceptions.

Every failure caused by the bytes a peer sent surfaces as a `SipError`
carrying the status code the RFCs want as the answer, so a caller can turn
any of them into a response without knowing which check failed.
"""


class SipError(Exception):
    """A protocol-level failure that a SIP response can answer.

    `reason` is a short, single-line explanation fit for a reason phrase or a
    log line; `status` is the response code to answer with (400 by default);
    `headers` are extra header fields the answer needs (e.g. `Unsupported` on a 420).
    """

    def __init__(
        self, reason: str, status: int = 400, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class SipParseError(SipError):
    """The bytes are not a well-formed SIP message (or a header value is malformed).

    Raised by `parse_message` for framing and start-line problems, and by the
    lazy accessors when a header is first read and turns out to be malformed.
    """
