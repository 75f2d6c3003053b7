"""Which TLS options a new outbound connection uses: those of the gateway at that address.

The proxy core and the prober hand the transport a destination (host and port
from the next hop's URI), not a gateway, so the gateways' `tls` options are
looked up by the address their URI names. Asked once per new TLS connection,
not per message; two gateways at one address with different options share the
first one's (a connection to an address is shared too).

A host given by name is dialled at the addresses DNS gave it (RFC 3263), so
`named` says which name an address is a TLS target of: the certificate is
checked against that name, the URI's host (RFC 5922 §4: the SIP domain, not an
SRV record's target), unless the gateway's `server_name` says otherwise, and
the options are those of the gateway whose URI names that host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from shared.routing_table.gateway_tls import GatewayTls
from shared.sip.errors import SipError
from shared.sip.transport.destination import destination_of
from shared.sip.transport.tls_context import ClientProfile
from shared.sip.uri import SipUri, parse_uri

Gateways = Callable[[], Iterable[tuple[str, GatewayTls | None]]]
"""Every gateway's address and `tls` options, as the caller's copy of the table has them now."""
NamedPeers = Callable[[tuple[str, int]], str | None]
"""The URI host name whose DNS targets include this TLS (address, port), or None."""


def client_profile(options: GatewayTls) -> ClientProfile:
    return ClientProfile(
        certificate=options.certificate,
        private_key=options.private_key,
        certificate_name=options.client_certificate,
        ca=options.ca_list,
        verify=options.verify_cert,
        server_name=options.server_name,
    )


class GatewayProfiles:
    """A `ProfileLookup` over the routing table's gateways."""

    def __init__(self, gateways: Gateways, named: NamedPeers | None = None) -> None:
        self._gateways = gateways
        self._named = named

    def __call__(self, peer: tuple[str, int]) -> ClientProfile | None:
        name = self._named(peer) if self._named is not None else None
        for address, options in self._gateways():
            if options is None:
                continue
            try:
                uri = parse_uri(address)
                where = destination_of(uri).address
            except SipError:
                continue
            if where == peer:
                return client_profile(options)
            if name is not None and isinstance(uri, SipUri) and _host(uri) == name.lower():
                profile = client_profile(options)
                return profile if profile.server_name else replace(profile, server_name=name)
        return None if name is None else ClientProfile(server_name=name)


def _host(uri: SipUri) -> str:
    return (uri.param("maddr") or uri.host).strip("[]").lower()
