"""Applying rule sets to a request, and saying what they would do (the route dry run).

Order: the sets are sorted by attachment (`SCOPE_ORDER`: source group, then
routing rule, then gateway or dispatcher set), stably, so sets attached at
the same level keep the order given; within a set, rules run in list order,
each seeing the result of the previous one.  The edge calls `apply` on each
outgoing branch's copy of the request, after routing chose the gateway (as
drouting's strip/prefix apply after the lookup), with the sets of the
caller's source group, the matched rule and that branch's gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from shared.routing_table.manipulation.rules import (
    PROTECTED_HEADERS,
    SCOPE_ORDER,
    AddHeader,
    RemoveHeader,
    ReplaceHeader,
    RewriteUser,
    Rule,
    RuleSet,
    SetParty,
)
from shared.sip.headers import header_key
from shared.sip.message import Request
from shared.sip.uri import SipUri, TelUri


@dataclass(frozen=True, slots=True)
class RuleEffect:
    """One effect of one rule: what `target` was (None: absent) and became (None: removed)."""

    rule_set: str
    rule: int
    action: str
    target: str
    before: str | None
    after: str | None


def ordered(rule_sets: Iterable[RuleSet]) -> list[RuleSet]:
    return sorted(rule_sets, key=lambda rule_set: SCOPE_ORDER[rule_set.scope.kind])


def apply(rule_sets: Iterable[RuleSet], request: Request) -> list[RuleEffect]:
    """Edit `request` in place; return what changed (empty if nothing did)."""
    changes: list[RuleEffect] = []
    for rule_set in ordered(rule_sets):
        for index, rule in enumerate(rule_set.rules):
            for target, before, after in _apply_rule(rule, request):
                changes.append(RuleEffect(rule_set.id, index, rule.action, target, before, after))
    return changes


def preview(rule_sets: Iterable[RuleSet], request: Request) -> list[RuleEffect]:
    """What `apply` would change, leaving `request` untouched."""
    return apply(rule_sets, request.copy())


@dataclass(frozen=True, slots=True)
class DryRun:
    number: str
    """The Request-URI user the gateway would receive."""
    changes: list[RuleEffect]


def dry_run(rule_sets: Iterable[RuleSet], number: str, caller: str = "anonymous") -> DryRun:
    """The route dry run's view: rule effects on a typical INVITE dialling `number`."""
    request = Request.build(
        "INVITE",
        f"sip:{number}@gateway.invalid",
        [
            ("Via", "SIP/2.0/UDP edge.invalid;branch=z9hG4bKdryrun"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{caller}@edge.invalid>;tag=dryrun"),
            ("To", f"<sip:{number}@gateway.invalid>"),
            ("Call-ID", "dryrun"),
            ("CSeq", "1 INVITE"),
        ],
    )
    changes = apply(rule_sets, request)
    uri = request.uri
    user = uri.user if isinstance(uri, SipUri) else None
    return DryRun(user or "", changes)


# ----- one rule -----------------------------------------------------------------------------

_Effect = tuple[str, str | None, str | None]


def _apply_rule(rule: Rule, request: Request) -> list[_Effect]:
    if isinstance(rule, AddHeader):
        request.add_header(rule.name, rule.value, first=rule.first)
        return [(rule.name, None, rule.value)]
    if isinstance(rule, RemoveHeader):
        return _remove(rule, request)
    if isinstance(rule, ReplaceHeader):
        return _replace(rule, request)
    if isinstance(rule, RewriteUser):
        return _rewrite_user(rule, request)
    return _set_party(rule, request)


def _remove(rule: RemoveHeader, request: Request) -> list[_Effect]:
    if rule.name is not None:
        names = [rule.name]
    else:
        regex = rule.regex
        assert regex is not None
        seen: dict[str, str] = {}
        for name, _ in request.header_fields():
            key = header_key(name)
            if key not in PROTECTED_HEADERS and regex.search(key):
                seen.setdefault(key, name)
        names = list(seen.values())
    effects: list[_Effect] = []
    for name in names:
        values = request.headers(name)
        if request.remove_header(name):
            effects.append((name, ", ".join(values), None))
    return effects


def _replace(rule: ReplaceHeader, request: Request) -> list[_Effect]:
    key = header_key(rule.name)
    fields = [value for name, value in request.header_fields() if header_key(name) == key]
    if not fields:
        return []
    regex = rule.regex
    if regex is None:
        new = [rule.value or "" for _ in fields]
    else:
        assert rule.replacement is not None
        new = [regex.sub(rule.replacement, value) for value in fields]
    if new == fields:
        return []
    request.remove_header(rule.name)
    for value in new:
        request.add_header(rule.name, value)
    return [(rule.name, ", ".join(fields), ", ".join(new))]


def _rewrite_user(rule: RewriteUser, request: Request) -> list[_Effect]:
    uri = request.uri
    if isinstance(uri, SipUri) and uri.user is not None:
        user = uri.user
    elif isinstance(uri, TelUri):
        user = uri.number
    else:
        return []
    new = user[rule.strip :]
    if rule.regex is not None and rule.replacement is not None:
        new = rule.regex.sub(rule.replacement, new)
    new = rule.prefix + new
    if new == user:
        return []
    if isinstance(uri, SipUri):
        request.set_uri(replace(uri, user=new))
    else:
        request.set_uri(replace(uri, number=new))
    return [("Request-URI user", user, new)]


def _set_party(rule: SetParty, request: Request) -> list[_Effect]:
    name = "From" if rule.action == "set_from" else "To"
    address = request.from_ if rule.action == "set_from" else request.to
    new = address
    if rule.display_name is not None:
        new = replace(new, display_name=rule.display_name)
    if rule.user is not None and isinstance(new.uri, SipUri):
        new = replace(new, uri=replace(new.uri, user=rule.user))
    if new == address:
        return []
    before = str(address)
    request.set_header(name, str(new))
    return [(name, before, str(new))]
