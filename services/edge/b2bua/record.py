"""A pair's state as a small flat record, and the pair rebuilt from one.

What a Redis hash would hold so that another edge can continue an answered call: per
leg its Call-ID, tags, CSeqs, From/To addresses, remote target, route set and peer
address, its session timer and whether its peer allows UPDATE, and the pair's times.
Every value is a string; the size is bounded by the legs' own bounds (`legs.MAX_VALUE`,
`legs.MAX_ROUTES`, `MAX_TIMER`): under 20,000 characters at worst and some 750 bytes for
a plain call.  A stream connection is not recorded:
another edge cannot use it, and reaches the peer at its address.  Transactions in
flight are not recorded either: a request crossing the pair when its edge dies is
retransmitted by its sender to the next edge, which answers it from the record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from services.edge.b2bua.legs import MAX_ROUTES, MAX_VALUE, Leg
from services.edge.b2bua.pair import Pair, Side
from services.edge.b2bua.session_timer import MAX_INTERVAL
from shared.sip.transport.destination import Destination

LEG_FIELDS: Final = (
    "call_id", "local_tag", "remote_tag", "local_uri", "remote_uri", "local_cseq",
    "remote_cseq", "remote_target", "routes", "peer",
)  # fmt: skip # the names on three lines, not one per line
"""Each leg's fields, prefixed `a_` or `b_` in the record."""
PAIR_FIELDS: Final = ("id", "created", "answered")
TIMER_FIELDS: Final = ("a_timer", "b_timer", "a_update", "b_update")
"""Each leg's session timer (`interval edge|peer`: who refreshes; empty: none) and whether
its peer allows UPDATE (`1`, `0`): optional, a record written before them reads without."""
MAX_TIMER: Final = 16
"""Characters of a `_timer` field at most."""
ROUTE_SEPARATOR: Final = "\n"
"""Between route set values: no header value holds a line break."""

N = TypeVar("N", int, float)


class RecordError(ValueError):
    """A record that does not describe a pair (a field missing, malformed or too long)."""


def to_record(pair: Pair, timers: Mapping[Side, tuple[int, bool]] | None = None) -> dict[str, str]:
    """`pair` as a flat record of strings (see the module docstring), with its legs' session
    `timers` (interval, whether the edge refreshes: `SessionTimers.kept`)."""
    record = {
        "id": pair.id,
        "created": repr(float(pair.created)),
        "answered": "" if pair.answered is None else repr(float(pair.answered)),
    }
    for side in ("a", "b"):
        leg = pair.leg(side)
        peer = leg.peer
        values = (
            leg.call_id, leg.local_tag, leg.remote_tag or "", leg.local_uri, leg.remote_uri,
            str(leg.local_cseq), "" if leg.remote_cseq is None else str(leg.remote_cseq),
            leg.remote_target, ROUTE_SEPARATOR.join(leg.route_set),
            f"{peer.transport} {peer.host} {peer.port}",
        )  # fmt: skip # in LEG_FIELDS' order
        record.update(zip((f"{side}_{name}" for name in LEG_FIELDS), values, strict=True))
        timer = (timers or {}).get(side)
        role = "" if timer is None else f"{timer[0]} {'edge' if timer[1] else 'peer'}"
        record[f"{side}_timer"], record[f"{side}_update"] = role, "1" if leg.update else "0"
    return record


def record_timers(record: Mapping[str, str]) -> dict[Side, tuple[int, bool]]:
    """The legs' session timers `to_record` wrote, as (interval, whether the edge refreshes);
    none in a record written before them.  `RecordError` for one that does not read."""
    timers: dict[Side, tuple[int, bool]] = {}
    for side in ("a", "b"):
        value = record.get(f"{side}_timer", "")
        if not value:
            continue
        interval, _, role = value.partition(" ")
        if len(value) > MAX_TIMER or role not in ("edge", "peer") or not interval.isdecimal():
            raise RecordError(f"{side}_timer is not 'interval edge|peer'")
        timers[side] = (min(max(int(interval), 1), MAX_INTERVAL), role == "edge")
    return timers


def from_record(record: Mapping[str, str]) -> Pair:
    """The pair `to_record` wrote, or `RecordError` naming what is wrong with `record`."""
    for name in (*PAIR_FIELDS, *(f"{side}_{f}" for side in "ab" for f in LEG_FIELDS)):
        value = record.get(name)
        if value is None:
            raise RecordError(f"no {name}")
        if len(value) > MAX_VALUE * (MAX_ROUTES if name.endswith("routes") else 1) + MAX_ROUTES:
            raise RecordError(f"{name} too long")
    answered = record["answered"]
    return Pair(
        id=record["id"],
        a=_leg(record, "a"),
        b=_leg(record, "b"),
        created=_number(record, "created", float),
        answered=_number(record, "answered", float) if answered else None,
    )


def _leg(record: Mapping[str, str], side: Side) -> Leg:
    def field(name: str) -> str:
        return record[f"{side}_{name}"]

    routes = field("routes")
    route_set = tuple(routes.split(ROUTE_SEPARATOR)) if routes else ()
    if len(route_set) > MAX_ROUTES:
        raise RecordError(f"{side}_routes holds more than {MAX_ROUTES} values")
    peer = field("peer").split(" ")
    if len(peer) != 3:
        raise RecordError(f"{side}_peer is not 'transport host port'")
    remote_cseq = field("remote_cseq")
    return Leg(
        call_id=field("call_id"),
        local_tag=field("local_tag"),
        local_uri=field("local_uri"),
        remote_uri=field("remote_uri"),
        remote_target=field("remote_target"),
        peer=Destination(peer[0], peer[1], _number(record, f"{side}_peer", int, peer[2])),
        local_cseq=_number(record, f"{side}_local_cseq", int),
        remote_tag=field("remote_tag") or None,
        remote_cseq=_number(record, f"{side}_remote_cseq", int) if remote_cseq else None,
        route_set=route_set,
        update=record.get(f"{side}_update") == "1",
    )


def _number(
    record: Mapping[str, str], name: str, kind: Callable[[str], N], text: str | None = None
) -> N:
    try:
        return kind(record[name] if text is None else text)
    except ValueError:
        raise RecordError(f"{name} is not a number") from None


MEDIA_FIELD: Final = "media"
"""Optional: `relay` when the call's media go through rtpengine (its session the caller's
Call-ID), so that an edge adopting the pair relays its later SDP and deletes the session at
its end.  Absent (an unrelayed call, or a record written before it): not relayed."""
MEDIA_RELAYED: Final = "relay"


def relayed(record: Mapping[str, str]) -> bool:
    """Whether `record`'s call is relayed by rtpengine (`MEDIA_FIELD`); any other value, or
    none, is not."""
    return record.get(MEDIA_FIELD) == MEDIA_RELAYED
