"""A gateway's TLS options: what an OpenSIPS `tls_mgm` client domain says, per gateway.

Carriers that require mutual TLS hand out a client certificate per interconnect,
and some present a certificate for a name other than the host their URI names,
or one signed by their own CA. These options say so on the gateway record; the
edge (and the health prober) connect to the gateway's address with them. The
files are paths on the edge hosts: the routing service does not read them (it
may run elsewhere), an edge that cannot load them fails the connection with a
log line naming the file, and the call goes on to the next gateway.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import ConfigDict, StringConstraints, model_validator

from shared.model import InputModel

FilePath = Annotated[str, StringConstraints(pattern=r"^/[^\x00-\x1f\x7f]{0,1023}$")]
"""An absolute path: the edges' working directories need not agree."""
ServerName = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
        max_length=253,
    ),
]
"""A DNS name, as in a certificate's SAN (an IP literal is the URI's host already)."""
CertificateName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""A client certificate's name in ``CALLMESH_TLS_CLIENT_CERTS`` (tls_mgm's domain name)."""


class GatewayTls(InputModel):
    """``certificate`` + ``private_key``: our client certificate (mutual TLS), or
    ``client_certificate``: the name of one in ``CALLMESH_TLS_CLIENT_CERTS`` (the same
    files for many gateways, set once per edge host); ``ca_list``: the
    CAs this gateway's certificate is checked against (default ``CALLMESH_TLS_CA``);
    ``verify_cert``: check it at all (default true); ``server_name``: the name sent and
    checked (default: the host of the gateway's URI)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    certificate: FilePath | None = None
    private_key: FilePath | None = None
    client_certificate: CertificateName | None = None
    ca_list: FilePath | None = None
    verify_cert: bool = True
    server_name: ServerName | None = None

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together (a client certificate)")
        if self.certificate is not None and self.client_certificate is not None:
            raise ValueError("a client certificate by its files or by its name, not both")
        return self


def names_tls(address: str) -> bool:
    """Whether a gateway URI is reached over TLS (`sips:`, or `;transport=tls`)."""
    lowered = address.lower()
    if lowered.startswith("sips:"):
        return True
    params = lowered.split("?", 1)[0].split(";")[1:]
    return "transport=tls" in params
