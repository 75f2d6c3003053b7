"""Applying a dialplan: number translation before routing (``00`` → ``+``, national → E.164).

Regexes are compiled once per dialplan version, not per call.
"""

from __future__ import annotations

import re

from shared.routing_table.model import Dialplan


class CompiledDialplan:
    __slots__ = ("_steps",)

    def __init__(self, dialplan: Dialplan) -> None:
        steps: list[tuple[str | None, re.Pattern[str] | None, re.Pattern[str] | None, str]] = []
        for rule in dialplan.rules:
            if rule.match_op == "exact":
                steps.append((rule.match, None, None, rule.replace))
            else:
                match = re.compile(rule.match)
                subst = None if rule.subst is None else re.compile(rule.subst)
                steps.append((None, match, subst, rule.replace))
        self._steps = tuple(steps)

    def translate(self, number: str) -> str | None:
        """The number rewritten by the first matching rule, or ``None`` when none matches."""
        for exact, match, subst, replace in self._steps:
            if exact is not None:
                if number == exact:
                    return replace
            elif match is not None:
                if subst is None:  # the match rewrites: one pass finds and substitutes
                    rewritten, found = match.subn(replace, number, count=1)
                    if found:
                        return rewritten
                elif match.search(number):
                    return subst.sub(replace, number, count=1)
        return None
