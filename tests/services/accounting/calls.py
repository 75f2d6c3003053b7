"""Call event scripts for the accounting tests: one call's events, as an edge sends them."""

from __future__ import annotations

from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallEvent,
    CallFailed,
    CallRinging,
    CallStarted,
    CallUpdated,
    DialogLeg,
)

T0 = 1_764_000_000.0


def started(call_id: str = "c1", tag: str = "ft", at: float = T0, **fields: object) -> CallStarted:
    values: dict[str, object] = {
        "call_id": call_id,
        "from_tag": tag,
        "at": at,
        "edge": "edge-a",
        "caller": "sip:+44 20-7946.0000@example.com",
        "callee_dialled": "0033123456789",
        "callee": "+33123456789",
        "source": "192.0.2.10:5060",
        "transport": "udp",
        "subscriber": "alice@example.com",
        "rule": "fr-mobile",
        "group": "eu",
        "carrier": "carrier-1",
    }
    values.update(fields)
    return CallStarted.model_validate(values)


def branch(
    call_id: str = "c1",
    tag: str = "ft",
    target: str = "gw1",
    *,
    sent_at: float = T0 + 0.01,
    at: float = T0 + 3,
    status: int = 200,
) -> BranchTried:
    return BranchTried(
        call_id=call_id,
        from_tag=tag,
        at=at,
        edge="edge-a",
        target=target,
        target_kind="gateway",
        address="198.51.100.1:5060",
        carrier="carrier-1",
        sent_at=sent_at,
        status=status,
        reason="OK" if status == 200 else "Busy Here",
    )


def answered_call(
    call_id: str = "c1", tag: str = "ft", talk: float = 61.5, by: str = "caller"
) -> list[CallEvent]:
    """A call answered by gw1 after gw0 was busy, ringing after 1 s, answered at 3 s."""
    bye_from, bye_to = (tag, "tt") if by == "caller" else ("tt", tag)
    return [
        started(call_id, tag),
        branch(call_id, tag, "gw0", sent_at=T0 + 0.005, at=T0 + 0.5, status=486),
        branch(call_id, tag, "gw1"),
        CallRinging(call_id=call_id, from_tag=tag, at=T0 + 1, edge="edge-a", status=180),
        CallAnswered(
            call_id=call_id,
            from_tag=tag,
            to_tag="tt",
            at=T0 + 3,
            edge="edge-a",
            target="gw1",
            target_kind="gateway",
            address="198.51.100.1:5060",
            carrier="carrier-2",
        ),
        CallUpdated(
            call_id=call_id, from_tag=tag, to_tag="tt", at=T0 + 30, edge="edge-b", method="UPDATE"
        ),
        CallEnded(
            call_id=call_id,
            from_tag=bye_from,
            to_tag=bye_to,
            at=T0 + 3 + talk,
            edge="edge-b",
            status=200,
        ),
    ]


def legs(call_id: str = "c1", tag: str = "ft") -> dict[str, object]:
    """What an edge's answered event carries for a hang-up: the INVITE's CSeq and both legs."""
    caller = DialogLeg(
        call_id=call_id,
        target="sip:alice@192.0.2.10:5060",
        from_header="<sip:+33123456789@example.com>;tag=tt",
        to_header=f"<sip:alice@example.com>;tag={tag}",
        routes=("<sip:sbc.example.com;lr>",),
        address="192.0.2.10:5060",
        transport="udp",
    )
    callee = DialogLeg(
        call_id=call_id,
        target="sip:gw1@198.51.100.1:5060",
        from_header=f"<sip:alice@example.com>;tag={tag}",
        to_header="<sip:+33123456789@example.com>;tag=tt",
        address="198.51.100.1:5060",
        transport="tcp",
    )
    return {"cseq": 7, "caller_leg": caller, "callee_leg": callee}


def with_legs(events: list[CallEvent]) -> list[CallEvent]:
    """`events` with each `CallAnswered` carrying `legs`, as a current edge sends it."""
    return [
        e.model_copy(update=legs(e.call_id, e.from_tag)) if isinstance(e, CallAnswered) else e
        for e in events
    ]


def failed(
    call_id: str = "c1",
    tag: str = "ft",
    *,
    status: int = 486,
    origin: str = "upstream",
    cause: str | None = None,
    at: float = T0 + 2,
) -> CallFailed:
    return CallFailed.model_validate(
        {
            "call_id": call_id,
            "from_tag": tag,
            "at": at,
            "edge": "edge-a",
            "status": status,
            "reason": "Busy Here",
            "origin": origin,
            "cause": cause,
        }
    )


def cancelled(call_id: str = "c1", tag: str = "ft", at: float = T0 + 4) -> CallCancelled:
    return CallCancelled(call_id=call_id, from_tag=tag, at=at, edge="edge-a")
