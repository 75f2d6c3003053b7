"""The RabbitMQ definitions that ship each data centre's events to the other's broker.

Each DC's broker federates its ``{ns}.events`` exchange from the peer DC's
``{ns}.events.shared`` (the ``rabbitmq_federation`` plugin): a link in the
downstream broker consumes from a queue in the upstream one, bound with the
downstream exchange's own bindings, and republishes there.  The shared
exchange gets only `SHARED_EVENTS` from its broker's events exchange
(exchange-to-exchange bindings), so only those cross.  Both DCs do it, each
the other's downstream, with ``max-hops`` 1 so an event crosses once and never
comes back.  The work queues (route commands, registrar requests, call
records) stay each DC's own, served by its own services.

``python -m deploy.two_dc.federation --namespace NS --peer-name dc1 --peer-uri
amqp://user:pw@dc1-broker:5672 --user callmesh --password-file PW_FILE > definitions.json``
writes the file a DC's broker loads at boot (``load_definitions`` in
``rabbitmq.conf``).  A broker loading definitions at boot creates no default
user or vhost, so the file carries the vhost and the services' user too.  The
password is stored as RabbitMQ's salted SHA-256 hash, never in clear; the peer
URI (with its credentials) is in the file as RabbitMQ needs it: keep the file
readable by the broker alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Definitions = dict[str, list[dict[str, Any]]]
"""RabbitMQ's definitions JSON: each kind (vhosts, users, …) a list of objects."""

MAX_HOPS = 1
"""An event crosses to the other DC once and is never federated back."""
RECONNECT_DELAY = 1
AWAY_KEPT_MS = 60_000
"""How long a broker keeps the events for the other DC while that DC is away (the federation
queue's ``expires``): past it the queue goes, so a long outage cannot fill the surviving
broker; a DC coming back starts its caches from Redis anyway."""
"""Seconds between a link's reconnect attempts (RabbitMQ's default is 5): the link to a DC
that comes back is up within a second."""


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


SHARED_EVENTS = (
    "routing.#",
    "registrar.#",
    "health.#",
    "edge.gateway.failed",
    "edge.destination.failed",
    "edge.auth.blocked",
    "edge.source.blocked",
    "edge.scanner.flagged",
    "edge.protection.#",
    "fraud.#",
)
"""The events the other DC needs: its edges' caches (routing table, bindings, domains, health
states, protection), the health prober's failure reports (the one active prober may be in
either DC) and the fraud alerts.  The rest stays in its DC: the call events and call records
feed work queues bound to them (``accounting.calls``, ``fraud.calls``, ``edge.media.expired``)
that each DC's own services consume — shipped, each call would be counted in both DCs."""


def events_exchange(namespace: str) -> str:
    return f"{namespace}.events"


def shared_exchange(namespace: str) -> str:
    """Where a DC's broker copies the `SHARED_EVENTS` of its events exchange (exchange-to-exchange
    bindings) for the other DC's federation link to take them from."""
    return f"{namespace}.events.shared"


def _topic(name: str) -> dict[str, Any]:
    """A durable topic exchange, declared exactly as the services (and federation) declare it."""
    return {
        "name": name, "vhost": "/", "type": "topic",
        "durable": True, "auto_delete": False, "internal": False, "arguments": {},
    }  # fmt: skip # one exchange


def definitions(
    namespace: str, peer_name: str, peer_uri: str, user: str, password: str
) -> Definitions:
    """One DC broker's boot definitions: the vhost ``/``, `user`, the events exchange and its
    `SHARED_EVENTS` copied to the shared exchange, the upstream `peer_name` at `peer_uri`
    (its shared exchange) and the policy federating this broker's events exchange from it.

    Raises ValueError for a name or URI RabbitMQ would take and then fail on at run time.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", peer_name):
        raise ValueError(f"peer name {peer_name!r}: letters, digits, '_', '.', '-' only")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", namespace):
        raise ValueError(f"namespace {namespace!r}: letters, digits, '_', '.', '-' only")
    if urlsplit(peer_uri).scheme not in {"amqp", "amqps"} or not urlsplit(peer_uri).hostname:
        raise ValueError("the peer URI must be amqp://… or amqps://… with a host")
    if urlsplit(peer_uri).path == "/":  # RabbitMQ reads it as the vhost "", which is not there
        raise ValueError("the peer URI ends in '/' (the vhost ''): end it at the port for '/'")
    return {
        "vhosts": [{"name": "/"}],
        "users": [
            {
                "name": user,
                "password_hash": password_hash(password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["administrator"],
            }
        ],
        "permissions": [
            {"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
        ],
        "exchanges": [_topic(events_exchange(namespace)), _topic(shared_exchange(namespace))],
        "bindings": [
            {
                "source": events_exchange(namespace),
                "vhost": "/",
                "destination": shared_exchange(namespace),
                "destination_type": "exchange",
                "routing_key": pattern,
                "arguments": {},
            }
            for pattern in SHARED_EVENTS
        ],
        "parameters": [
            {
                "vhost": "/",
                "component": "federation-upstream",
                "name": peer_name,
                "value": {
                    "uri": peer_uri,
                    "exchange": shared_exchange(namespace),
                    "max-hops": MAX_HOPS,
                    "reconnect-delay": RECONNECT_DELAY,
                    "expires": AWAY_KEPT_MS,
                    "ack-mode": "on-confirm",
                    "trust-user-id": False,
                },
            }
        ],
        "policies": [
            {
                "vhost": "/",
                "name": f"federate-{namespace}-events",
                "pattern": f"^{re.escape(events_exchange(namespace))}$",
                "apply-to": "exchanges",
                "priority": 10,
                "definition": {"federation-upstream": peer_name},
            }
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="callmesh")
    parser.add_argument("--peer-name", required=True, help="the other DC, e.g. dc1")
    parser.add_argument(
        "--peer-uri", required=True, help="amqp://user:pw@broker:5672, no '/' after"
    )
    parser.add_argument("--user", default="callmesh")
    parser.add_argument(
        "--password-file", required=True, type=Path, help="the services' broker password"
    )  # a file, never an argument: every user of the machine may read the command lines
    args = parser.parse_args(argv)
    try:
        password = args.password_file.read_text().strip()
        if not password:
            raise ValueError(f"{args.password_file} is empty")
        found = definitions(args.namespace, args.peer_name, args.peer_uri, args.user, password)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    json.dump(found, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
