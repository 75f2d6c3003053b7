"""The rules snapshot's packed form: one tab-separated line per rule, many per chunk.

Why not the stored JSON: an edge loading a million rules cannot afford a
pydantic validation each (validation already happened when the rule was
written). A line is ``id, groups, prefix, priority, targets, window`` where
targets are ``;``-separated and the rare time window is its JSON; none of the
validated fields can contain a tab or a newline, so splitting is unambiguous.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from shared.routing_table.compiled import CompiledRule
from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Rule
from shared.routing_table.timewindow import TimeWindow

RULES_PER_CHUNK = 50_000


def pack_rules(rows: Iterable[tuple[str, Rule]]) -> bytes:
    """``rows`` as one chunk (see :data:`RULES_PER_CHUNK` for how many to put in one)."""
    return pack_lines(packed_line(rule_id, rule) for rule_id, rule in rows)


def packed_line(rule_id: str, rule: Rule) -> str:
    window = "" if rule.time is None else rule.time.model_dump_json(exclude_defaults=True)
    targets = ";".join(rule.gateways)
    return f"{rule_id}\t{rule.group}\t{rule.prefix}\t{rule.priority}\t{targets}\t{window}"


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
        rule_id, groups, prefix, priority, targets, window = line.split("\t")
        yield compile_rule(
            rule_id,
            groups=tuple(groups.split(",")),
            prefix=prefix,
            priority=int(priority),
            window=TimeWindow.model_validate_json(window) if window else None,
            targets=tuple(targets.split(";")),
        )
