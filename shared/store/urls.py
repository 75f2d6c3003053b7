"""What ``CALLMESH_REDIS_URL`` may say: one Redis, or the Sentinels that know the primary.

A plain ``redis://`` (``rediss://``, ``unix://``) URL names one server; the
Sentinel form names the Sentinels and the service they watch, so that every
process finds the current primary itself and follows a failover without a
restart::

    redis+sentinel://[[user]:password@]h1:26379,h2:26379/mymaster[/db][?sentinel_password=…]

The user and password are those of the Redis servers (primary and replicas);
``sentinel_password`` those of the Sentinels, when they ask for one. Sans-IO:
parsing only, so the settings check the text at start and no error echoes a
password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """The parts of a Sentinel URL; ``repr`` never shows the passwords."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def __repr__(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"SentinelUrl({hosts}/{self.service}/{self.db})"


def parse_redis_url(text: str) -> str | SentinelUrl:
    """The URL as redis-py takes it (plain form) or its :class:`SentinelUrl`.

    Raises ``ValueError`` naming the problem, never the password.
    """
    text = text.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise ValueError("expected a redis://, rediss://, unix:// or redis+sentinel:// URL")
    if scheme != SENTINEL_SCHEME:
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unknown Redis URL scheme {scheme!r}")
        return text
    return _sentinel(text)


def _sentinel(text: str) -> SentinelUrl:
    parts = urlsplit(text)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(item) for item in hosts.split(",") if item.strip())
    if not sentinels:
        raise ValueError("a Sentinel URL names at least one Sentinel host")
    path = [piece for piece in parts.path.split("/") if piece]
    if not path or len(path) > 2:
        raise ValueError("expected redis+sentinel://hosts/service[/db]")
    service, db = unquote(path[0]), path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError("the database in a Sentinel URL is a number")
    query = parse_qs(parts.query)
    unknown = set(query) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown Sentinel URL parameter {min(unknown)!r}")
    sentinel_password = query.get("sentinel_password", [None])[-1]
    return SentinelUrl(sentinels, service, int(db), username, password, sentinel_password)


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError("a Sentinel host is empty")
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"bad Sentinel port in {host!r}")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT
