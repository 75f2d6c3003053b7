"""Protection state shared by the services that authenticate and the edges that enforce it.

Failed digest authentications are counted per account and per source
across the cluster (`failures`, over the store: `store`); the blocks that
follow, the edges' flood blocks and scanner flags, and the operator's
allow-list live in the store too, so one API call sees and changes them
everywhere.  Each edge worker keeps an in-memory copy (`blocklist`) fed by
the ``edge.auth.blocked`` / ``edge.protection.…`` events, so nothing on the
SIP path waits for Redis.
"""

from shared.protection.blocklist import BlockList
from shared.protection.failures import (
    AUTH_FAILURE_LOG_FORMAT,
    AuthFailureSettings,
    FailureCounts,
    WrongCredentialsError,
    log_auth_failure,
)
from shared.protection.store import BlockRecord, ProtectionStore

__all__ = [
    "AUTH_FAILURE_LOG_FORMAT",
    "AuthFailureSettings",
    "BlockList",
    "BlockRecord",
    "FailureCounts",
    "ProtectionStore",
    "WrongCredentialsError",
    "log_auth_failure",
]
