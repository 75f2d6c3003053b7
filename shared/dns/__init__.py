"""RFC 3263 next-hop resolution: NAPTR → SRV → A/AAAA, a TTL-bounded cache, an async resolver.

The selection (`locate`, `order`) and the `cache` are sans-IO: they read
what the cache holds and say which records are missing (`NeedRecords`), so
the edge's proxy core can route from memory on every call. `resolver`
(dnspython) is the only part that talks to a DNS server: it fills the
cache, bounded in time, and refreshes what is used ahead of its expiry.
"""

from shared.dns.cache import DnsCache, Entry, RecordKey
from shared.dns.locate import DnsTarget, Located, NameSpec, NeedRecords, locate
from shared.dns.names import Names
from shared.dns.records import Naptr, Srv

__all__ = [
    "DnsCache",
    "DnsTarget",
    "Entry",
    "Located",
    "NameSpec",
    "Names",
    "Naptr",
    "NeedRecords",
    "RecordKey",
    "Srv",
    "locate",
]
