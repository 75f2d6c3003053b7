"""The edge's cache of the registrar's records (domains, bindings, subscribers, HA1s).

Kept current by `services.edge.feeds.location`; read per message by the proxy core.
"""

from services.edge.location.directory import (
    BindingsQuery,
    Directory,
    DomainQuery,
    Ha1Query,
    Missing,
    NonceCountQuery,
    Query,
    SubscriberQuery,
)

__all__ = [
    "BindingsQuery",
    "Directory",
    "DomainQuery",
    "Ha1Query",
    "Missing",
    "NonceCountQuery",
    "Query",
    "SubscriberQuery",
]
