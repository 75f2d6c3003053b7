"""What ``CALLMESH_RABBITMQ_URL`` may say: one node's AMQP URL, or every node's of a cluster.

Sans-IO: parsing only, so the settings check the text at start.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit


def parse_node_urls(text: str) -> tuple[str, ...]:
    """``CALLMESH_RABBITMQ_URL``: the AMQP URLs of a cluster's nodes, comma-separated
    (a client connects to any live one). Errors never quote the text (it holds a password)."""
    urls = tuple(filter(None, (item.strip() for item in text.split(","))))
    if not urls:
        raise ValueError("expected at least one amqp:// URL")
    for number, url in enumerate(urls, 1):
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("amqp", "amqps") or not rest:
            raise ValueError(f"node URL {number} is not an amqp:// or amqps:// URL")
    return urls


def node_address(url: str) -> str:
    """``host:port`` of a node's URL (for logs and ``AmqpBus.node``; never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


_USERINFO = re.compile(r"(?<=://)[^/\s]*@")


def without_credentials(text: str) -> str:
    """``text`` with every URL's ``user:password@`` removed: a connection error may quote the URL
    it tried, and what the bus says of a failure reaches logs and API errors."""
    return _USERINFO.sub("", text)
