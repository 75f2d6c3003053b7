"""The rules snapshot's packed form: one tab-separated line per rule, many per chunk.

Why not the stored JSON: an edge loading a million rules cannot afford a
pydantic validation each (validation already happened when the rule was
written). A line is ``id, groups, prefix, priority, targets, window[, media[,
limits[, topology[, mode]]]]`` where targets are ``;``-separated, the rare time window
is its JSON, the rare media relay policy its word, the rare limits and topology hiding
their JSON, the rare ``b2bua`` mode its word (the default ``proxy``: empty); a rare field
is empty when a later one follows, and a line ends after its last present field (so
older snapshots' lines read as having none); none of the validated fields can contain a
tab or a newline, so splitting is unambiguous.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from shared.dispatcher.model import Mode
from shared.routing_table.compiled import CompiledRule
from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Limits, MediaRelay, Rule
from shared.routing_table.timewindow import TimeWindow
from shared.routing_table.topology import TargetTopology

RULES_PER_CHUNK = 50_000
_MEDIA_RELAY: dict[str, MediaRelay] = {"always": "always", "nat": "nat", "never": "never"}
_MODES: dict[str, Mode] = {"b2bua": "b2bua"}


def pack_rules(rows: Iterable[tuple[str, Rule]]) -> bytes:
    """``rows`` as one chunk (see :data:`RULES_PER_CHUNK` for how many to put in one)."""
    return pack_lines(packed_line(rule_id, rule) for rule_id, rule in rows)


def packed_line(rule_id: str, rule: Rule) -> str:
    window = "" if rule.time is None else rule.time.model_dump_json(exclude_defaults=True)
    targets = ";".join(rule.gateways)
    line = f"{rule_id}\t{rule.group}\t{rule.prefix}\t{rule.priority}\t{targets}\t{window}"
    rare = [
        rule.media_relay or "",
        "" if rule.limits is None else rule.limits.model_dump_json(exclude_none=True),
        "" if rule.topology_hiding is None else rule.topology_hiding.model_dump_json(),
        "" if rule.mode == "proxy" else rule.mode,
    ]
    while rare and not rare[-1]:
        rare.pop()
    return "\t".join((line, *rare))


def packed_lines(chunk: bytes) -> Iterator[tuple[str, str]]:
    """The chunk's rules as (rule id, line), without compiling them."""
    for line in chunk.decode().splitlines():
        yield line.partition("\t")[0], line


def pack_lines(lines: Iterable[str]) -> bytes:
    """Lines of :func:`packed_line` as one chunk."""
    return "".join(f"{line}\n" for line in lines).encode()


def unpack_rules(chunk: bytes, compiler: RoutingIndex) -> Iterator[CompiledRule]:
    """The chunk's rules in order, compiled (interned) by ``compiler``; no validation."""
    compile_rule = compiler.compile
    for line in chunk.decode().splitlines():
        rule_id, groups, prefix, priority, targets, window, *rare = line.split("\t")
        if rare and rare[0]:
            compiler.rule_media[rule_id] = _MEDIA_RELAY[rare[0]]
        if len(rare) > 1 and rare[1]:
            compiler.rule_limits[rule_id] = Limits.model_validate_json(rare[1])
        if len(rare) > 2 and rare[2]:
            compiler.rule_topology[rule_id] = TargetTopology.model_validate_json(rare[2])
        if len(rare) > 3 and _MODES[rare[3]] == "b2bua":
            compiler.b2bua_rules.add(rule_id)
        yield compile_rule(
            rule_id,
            groups=tuple(groups.split(",")),
            prefix=prefix,
            priority=int(priority),
            window=TimeWindow.model_validate_json(window) if window else None,
            targets=tuple(targets.split(";")),
        )
