"""TLS contexts: our certificate for peers that connect to us, and how we check peers we connect to.

Why a holder instead of one `ssl.SSLContext`: a certificate is renewed without a
restart (Let's Encrypt every 60 days), so the server context is rebuilt when the
certificate or key file changes (looked at, at most once a second, when a peer
connects) or on SIGHUP, and only new handshakes use it; a file caught half
written fails to load and the previous context stays until the next look.
Outbound, each gateway may name its own client certificate (mutual TLS),
verification and server name (`ClientProfile`); contexts are built once per
profile and rebuilt when their files change.  TLS 1.2 is the minimum both ways
(RFC 8996 deprecates 1.0 and 1.1).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from shared.settings import Settings, parse_client_certs

log = logging.getLogger(__name__)

RECHECK_INTERVAL: Final = 1.0
"""Seconds between two looks at the server certificate's files."""

Stamp = tuple[tuple[int, int, int] | None, ...]


class TlsConfigError(OSError):
    """A certificate, key or CA bundle that cannot be loaded; the text names the file.

    An `OSError` like a port that cannot be bound: a process that meets it at start
    stops with its one line."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "TLS configuration error"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The `CALLMESH_TLS_*` settings: our certificate and key, the CAs we trust, the time bound."""

    certificate: str | None = None
    private_key: str | None = None
    ca: str | None = None
    """PEM bundle of the CAs peers' certificates are verified against; unset: the system's."""
    handshake_timeout: float = 5.0
    client_certs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Client certificates by name (`CALLMESH_TLS_CLIENT_CERTS`): name → (certificate, key)."""
    verify_clients: str = "off"
    """`CALLMESH_TLS_VERIFY_CLIENTS`: whether a `tls:` listener asks peers for a certificate
    (`optional`, `required`) and verifies it against `ca`, or not (`off`)."""

    @classmethod
    def of(cls, settings: Settings) -> TlsFiles:
        return cls(
            settings.tls_cert,
            settings.tls_key,
            settings.tls_ca,
            settings.tls_handshake_timeout,
            parse_client_certs(settings.tls_client_certs),
            settings.tls_verify_clients,
        )


@dataclass(frozen=True, slots=True)
class ClientProfile:
    """How we connect to one TLS peer: a gateway's `tls` options (a tls_mgm client domain)."""

    certificate: str | None = None
    """Our client certificate for a peer that asks for one (mutual TLS), with `private_key`."""
    private_key: str | None = None
    certificate_name: str | None = None
    """Instead of the files: the name of a client certificate of `TlsFiles.client_certs`."""
    ca: str | None = None
    """The CAs this peer's certificate is checked against, instead of `TlsFiles.ca`."""
    verify: bool = True
    """Verify the peer's certificate and name; off only for a peer known by other means."""
    server_name: str | None = None
    """The name sent (SNI) and checked in the peer's certificate; unset: the URI's host."""


DEFAULT_PROFILE: Final = ClientProfile()

ProfileLookup = Callable[[tuple[str, int]], ClientProfile | None]
"""The profile of the peer at (host, port) as its URI names it; None: the default."""


def _stamp(paths: Iterable[str | None]) -> Stamp:
    """What tells a changed file: modification time, size and inode (a renamed-in copy)."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            status = os.stat(path) if path else None
        except OSError:
            status = None
        stamps.append((status.st_mtime_ns, status.st_size, status.st_ino) if status else None)
    return tuple(stamps)


def _loaded(build: Callable[[], ssl.SSLContext], what: str) -> ssl.SSLContext:
    try:
        return build()
    except (OSError, ssl.SSLError, ValueError) as error:
        raise TlsConfigError(f"{what}: {error}") from None


def server_context(files: TlsFiles, *, ask_clients: bool = True) -> ssl.SSLContext:
    """A context for peers connecting to us; raises `TlsConfigError` naming what is wrong.

    With `files.verify_clients` on (and `ask_clients`: not for browsers, which would show
    their user a certificate picker) the peer is asked for a certificate, verified against
    `files.ca` (else the system's CAs): what RFC 5923 aliasing needs (`alias`). A peer that
    presents one that does not verify fails the handshake, even when it is `optional`
    (OpenSSL's rule), hence off by default: a phone may present its maker's device
    certificate."""
    if not files.certificate or not files.private_key:
        raise TlsConfigError(
            "a tls: listener needs CALLMESH_TLS_CERT and CALLMESH_TLS_KEY (PEM files)"
        )
    certificate, private_key = files.certificate, files.private_key
    verify = files.verify_clients if ask_clients else "off"

    def build() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # A TLS 1.2 peer asking for handshake after handshake costs us one each time, past
        # the handshake timeout and the flood check: OpenSSL 3 refuses it by default,
        # OpenSSL 1.1.1 does not.
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.load_cert_chain(certificate, private_key)
        if verify != "off":
            context.verify_mode = ssl.CERT_REQUIRED if verify == "required" else ssl.CERT_OPTIONAL
            if files.ca:
                context.load_verify_locations(files.ca)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        return context

    what = f"certificate {certificate} with key {private_key}"
    if verify != "off":
        what += f", client CA bundle {files.ca}" if files.ca else ", the system's CA bundle"
    return _loaded(build, what)


def client_files(files: TlsFiles, profile: ClientProfile) -> tuple[str | None, str | None]:
    """The client certificate and key of `profile` (by name or as files), if it has one."""
    name = profile.certificate_name
    if name is None:
        return profile.certificate, profile.private_key
    pair = files.client_certs.get(name)
    if pair is None:
        raise TlsConfigError(f"client certificate {name!r} is not in CALLMESH_TLS_CLIENT_CERTS")
    return pair


def client_context(files: TlsFiles, profile: ClientProfile) -> ssl.SSLContext:
    """A context for connecting to a peer of `profile`; raises `TlsConfigError`."""
    ca = profile.ca or files.ca
    certificate, private_key = client_files(files, profile)

    def build() -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not profile.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if certificate:
            context.load_cert_chain(certificate, private_key)
        return context

    what = f"CA bundle {ca}" if ca else "the system's CA bundle"
    if certificate:
        what += f", client certificate {certificate} with key {private_key}"
    return _loaded(build, what)


class TlsContexts:
    """The contexts in use, rebuilt when their files change or on `reload` (SIGHUP)."""

    def __init__(self, files: TlsFiles, clock: Callable[[], float] = time.monotonic) -> None:
        self.files = files
        self._clock = clock
        self._server: ssl.SSLContext | None = None
        self._browsers: ssl.SSLContext | None = None
        """The server context without the client certificate request (`server`)."""
        self._server_stamp: Stamp = ()
        self._next_look = 0.0
        self._clients: dict[ClientProfile, tuple[ssl.SSLContext, Stamp]] = {}

    def _server_files(self) -> tuple[str | None, ...]:
        files = self.files
        verifying = files.verify_clients != "off"
        return (files.certificate, files.private_key, files.ca if verifying else None)

    def server(self, *, ask_clients: bool = True) -> ssl.SSLContext:
        """The context the next accepted handshake uses; raises `TlsConfigError` if none loads.
        `ask_clients=False`: one that never asks the peer for a certificate (WSS)."""
        now = self._clock()
        if self._server is None or now >= self._next_look:
            self._next_look = now + RECHECK_INTERVAL
            stamp = _stamp(self._server_files())
            if self._server is None or stamp != self._server_stamp:
                self._load_server(stamp)
        assert self._server is not None and self._browsers is not None
        return self._server if ask_clients else self._browsers

    def _load_server(self, stamp: Stamp) -> None:
        try:
            context = server_context(self.files)
            browsers = (
                context
                if self.files.verify_clients == "off"
                else server_context(self.files, ask_clients=False)
            )
        except TlsConfigError as error:
            if self._server is None:
                raise
            log.warning("tls: %s; new handshakes keep the previous certificate", error)
            return
        if self._server is not None:
            log.info("tls: certificate %s loaded for new handshakes", self.files.certificate)
        self._server, self._browsers, self._server_stamp = context, browsers, stamp

    def client(self, profile: ClientProfile) -> ssl.SSLContext:
        """The context for a peer of `profile`, rebuilt if its files changed."""
        stamp = _stamp((profile.ca or self.files.ca, *client_files(self.files, profile)))
        known = self._clients.get(profile)
        if known is not None and known[1] == stamp:
            return known[0]
        context = client_context(self.files, profile)
        if len(self._clients) > 1024:  # profiles come from the routing table: bounded anyway
            self._clients.clear()
        self._clients[profile] = (context, stamp)
        return context

    def reload(self) -> None:
        """Load every file again now (SIGHUP); a server certificate that fails keeps the old one."""
        self._clients.clear()
        if self.files.certificate:
            self._next_look = self._clock() + RECHECK_INTERVAL
            self._load_server(_stamp(self._server_files()))


HANDSHAKE_FAILURE_REASONS: Final = (
    "timeout",
    "closed",
    "certificate",
    "peer_alert",
    "protocol_version",
    "protocol",
)

_VERSION_REASONS: Final = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "VERSION_TOO_LOW",
        "WRONG_SSL_VERSION",
    }
)


def failure_reason(error: BaseException) -> str:
    """A failed handshake's label (one of `HANDSHAKE_FAILURE_REASONS`, a fixed set).

    `certificate`: the peer's certificate did not verify (untrusted, expired, wrong
    name); `peer_alert`: the peer refused ours or the handshake (an alert);
    `protocol_version`: TLS 1.0/1.1 or older; `protocol`: anything else that is not
    TLS as we speak it (garbage, plain SIP on the TLS port).
    """
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ssl.SSLCertVerificationError):
        return "certificate"
    if isinstance(error, ssl.SSLError):
        reason = str(getattr(error, "reason", None) or "")
        if reason in _VERSION_REASONS:
            return "protocol_version"
        if reason.startswith(("TLSV1_ALERT", "TLSV13_ALERT", "SSLV3_ALERT")):
            return "peer_alert"
        if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return "closed"
        return "protocol"
    return "closed"


def describe(error: BaseException) -> str:
    """A failed handshake in a few words, for its log line (no traceback)."""
    if isinstance(error, TimeoutError):
        return "handshake timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"handshake failed: {error.reason or error.strerror or error}"
    return f"handshake failed: {error or type(error).__name__}"
