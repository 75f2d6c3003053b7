"""Subscriber names as the admin API takes them: a SIP user part and a domain, bounded.

Why stricter than a bare RFC 3261 ``user`` (unreserved / escaped /
user-unreserved): the name becomes a Redis key, an AoR and a path segment of
this API, so what could be read two ways is refused. Escapes must be
canonical: ``%2e`` for ``.`` (or ``%61`` for ``a``) names the same SIP user as
the plain character (RFC 3261 §19.1.4 compares unescaped), so only characters
that cannot be written plainly may be escaped, and never ``/``, control
characters or non-ASCII bytes (overlong UTF-8 forms of ``/`` and ``.``). ``/``
is refused written plainly too (it cannot travel in one path segment), and so
is ``..``. 64 characters at most, like the ``username`` column of OpenSIPS's
and Kamailio's ``subscriber`` table.
"""

from __future__ import annotations

import re
import string

MAX_USER = 64
MAX_DOMAIN = 253
PLAIN = frozenset(string.ascii_letters + string.digits + "-_.!~*'()" + "&=+$,;?")
"""RFC 3261 unreserved and user-unreserved characters, without ``/``."""
ESCAPABLE = frozenset(chr(code) for code in range(0x20, 0x7F)) - PLAIN - {"/"}
"""What a ``%HH`` escape may stand for: printable ASCII that cannot be written plainly."""
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def check_user(user: str) -> str:
    """``user`` if it is an acceptable SIP user part; else ``ValueError`` saying why."""
    if not 1 <= len(user) <= MAX_USER:
        raise ValueError(f"a user part has 1 to {MAX_USER} characters")
    if user == "." or ".." in user:
        raise ValueError("a user part may not be '.' or contain '..'")
    for position, char in enumerate(user):
        if char == "%":
            _check_escape(user[position : position + 3])
        elif char == "/":
            raise ValueError("'/' is not allowed in a user part")
        elif char not in PLAIN:
            raise ValueError(f"{char!r} is not allowed in a user part; escape it as %XX")
    return user


def check_domain(domain: str) -> str:
    """``domain`` if it is a host name (labels of letters, digits and ``-``, 253 at most)."""
    if len(domain) > MAX_DOMAIN or not _DOMAIN.fullmatch(domain):
        raise ValueError("a domain is a host name like example.com")
    return domain


def _check_escape(escape: str) -> None:
    match = _ESCAPE.fullmatch(escape)
    if match is None:
        raise ValueError("'%' starts an escape of two hex digits")
    char = chr(int(match[1], 16))
    if char in PLAIN:
        raise ValueError(f"{escape} stands for {char!r}: write it as is")
    if char not in ESCAPABLE:
        raise ValueError(f"{escape} is not allowed in a user part")


def check_subscriber_id(subscriber_id: str) -> str:
    """``user@domain`` or a bare ``user``, each part checked as above."""
    user, at, domain = subscriber_id.partition("@")
    check_user(user)
    if at:
        check_domain(domain)
    return subscriber_id
