"""Edge protection: trusted-peer ACLs, flood blocking, scanner detection.

All three are pure and synchronous, take the caller's `now`, and cost O(1)
per packet with bounded memory, so the edge can run them before parsing
more than the source address and a header or two.  Suggested order per
request: `FloodDetector.check` (drop before any work) → `AddressAcl.match`
(trusted peers skip authentication and the scanner check) →
`ScannerDetector.check` for the untrusted → authentication. The call limits,
shared by the cluster, are `services.edge.policy.limits`.
"""

from pydantic import BaseModel, ConfigDict, field_validator

from services.edge.protection.flood import FloodDetector, FloodVerdict
from services.edge.protection.flood_settings import FloodSettings
from services.edge.protection.scanner import (
    SCANNER_USER_AGENTS,
    ScannerDetector,
    ScannerSettings,
    ScanVerdict,
)
from shared.acl import AclEntry, AddressAcl, parse_acl


class ProtectionSettings(BaseModel):
    """Everything the edge's protection reads from its settings, in one validated model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trusted: str = "127.0.0.0/8,::1/128"
    """`CALLMESH_TRUSTED_NETWORKS`, entries `[transport:]network[:port]`."""
    flood: FloodSettings = FloodSettings()
    scanner: ScannerSettings = ScannerSettings()

    @field_validator("trusted")
    @classmethod
    def _parse_trusted(cls, text: str) -> str:
        parse_acl(text)
        return text

    def acl(self) -> AddressAcl:
        return AddressAcl.parse(self.trusted)


__all__ = [
    "SCANNER_USER_AGENTS",
    "AclEntry",
    "AddressAcl",
    "FloodDetector",
    "FloodSettings",
    "FloodVerdict",
    "ProtectionSettings",
    "ScanVerdict",
    "ScannerDetector",
    "ScannerSettings",
    "parse_acl",
]
