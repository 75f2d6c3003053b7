"""Failed digest authentications: the thresholds, what a count means, and the log line.

Like a Kamailio/OpenSIPS set-up of an ``htable`` failure counter plus
fail2ban: each failure counts for the account (``user@realm``) and for the
source address within ``window`` seconds.  From ``delay_after`` failures of
either, the answer to each further failure is held back ``delay`` seconds
(a guesser's rate drops to one guess per delay per connection, a phone that
knows its password never waits: only failures are delayed); from
``block_after`` failures of the account, or ``source_block_after`` of the
source, every authentication of that account (or from that source) is
refused with 403 for ``block_time``, the right password included, the same
answer whether the user exists or not.

The log line is fixed text with ``key=value`` fields so a fail2ban filter
can read it (see ``docs/security.md``); its wording is part of the interface.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from shared.sip.errors import SipError

AUTH_FAILURE_LOG_FORMAT: Final = "auth failed: source=%s user=%s realm=%s method=%s reason=%s"
"""Stable: fail2ban filters match it (``docs/security.md``)."""

log = logging.getLogger("callmesh.auth")


class AuthFailureSettings(BaseModel):
    """``CALLMESH_AUTH_*``: the defaults follow fail2ban's (10 minutes to find, 10 to ban)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(default=600, ge=1)
    """Seconds a failure counts (fail2ban's findtime)."""
    delay_after: int = Field(default=5, ge=1)
    delay: float = Field(default=2.0, ge=0, le=30)
    block_after: int = Field(default=10, ge=1)
    """Failures of one account that block it."""
    source_block_after: int = Field(default=50, ge=1)
    """Failures from one source address (over any accounts) that block it."""
    block_time: int = Field(default=600, ge=1)
    """Seconds a block lasts (fail2ban's bantime)."""


class WrongCredentialsError(SipError):
    """The credentials do not prove the password (or there is no such subscriber): a failed
    authentication, answered 403 once counted (the same answer for any user)."""

    def __init__(self, user: str, realm: str) -> None:
        super().__init__("Forbidden", 403)
        self.user = user
        self.realm = realm


@dataclass(frozen=True, slots=True)
class FailureCounts:
    """What the store counted after one more failure, and which blocks that started."""

    account: int
    source: int
    account_blocked: bool = False
    source_blocked: bool = False

    def delay(self, settings: AuthFailureSettings) -> float:
        """How long to hold the answer to this failure back."""
        if max(self.account, self.source) >= settings.delay_after:
            return settings.delay
        return 0.0


def log_auth_failure(source: str, user: str, realm: str, method: str, reason: str) -> None:
    """One line per failed authentication; values never contain spaces (fail2ban reads them)."""
    user, realm, method = _token(user), _token(realm), _token(method)
    log.warning(
        AUTH_FAILURE_LOG_FORMAT,
        source,
        user,
        realm,
        method,
        reason,
        extra={"source": source, "user": user, "realm": realm, "method": method},
    )


def _token(text: str) -> str:
    """A hostile username must not forge another field or line: no spaces, no controls."""
    cleaned = "".join(c if c.isprintable() and not c.isspace() else "?" for c in text[:128])
    return cleaned or "-"
