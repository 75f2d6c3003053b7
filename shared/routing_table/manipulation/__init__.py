"""Declarative SIP header manipulation, attached to source groups, rules, gateways, dispatcher sets.

Rules (`rules`): `add_header`, `remove_header` (by name or name pattern),
`replace_header` (whole value or regex substitution), `rewrite_ruri_user`
(strip N, regex with back-references, prefix), `set_from` / `set_to`
(display name, user).  A `RuleSet` is validated when written (JSON through
the API); an invalid regex, a line break in a value or a protected header
(`PROTECTED_HEADERS`) is refused with the reason.  `engine.apply` edits a
request in the documented order and returns the `RuleEffect`s; `preview` and
`dry_run` report the same without editing anything.

Example rule set (JSON):

    {"id": "carrier-a", "scope": {"kind": "gateway", "id": "1"},
     "rules": [{"action": "rewrite_ruri_user", "strip": 1, "prefix": "00"},
               {"action": "remove_header", "pattern": "^x-"},
               {"action": "add_header", "name": "X-Account", "value": "4711"}]}
"""

from shared.routing_table.manipulation.engine import (
    DryRun,
    RuleEffect,
    apply,
    dry_run,
    ordered,
    preview,
)
from shared.routing_table.manipulation.rules import (
    PROTECTED_HEADERS,
    AddHeader,
    Attachment,
    RemoveHeader,
    ReplaceHeader,
    RewriteUser,
    Rule,
    RuleSet,
    SetParty,
)

__all__ = [
    "PROTECTED_HEADERS",
    "AddHeader",
    "Attachment",
    "DryRun",
    "RemoveHeader",
    "ReplaceHeader",
    "RewriteUser",
    "Rule",
    "RuleEffect",
    "RuleSet",
    "SetParty",
    "apply",
    "dry_run",
    "ordered",
    "preview",
]
