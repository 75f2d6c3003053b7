"""The drill's table, printed and written into docs/high-availability.md ("The fault drill").

Figures typed by hand drift from what the code does: the section is the
drill's own output, replaced whole at each full run, with when, where and how
it ran (the machine is shared and noisy, so its load is part of the record).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from deploy.drill.measure import OVERRUN_GRACE, Plan, StepResult
from deploy.drill.run import BROKE

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "high-availability.md"
HEADING = "## The fault drill"
COLUMNS = (
    "part killed",
    "calls placed",
    "calls failed",
    "dropped mid-dialog",
    "calls back after",
    "registrations failed",
    "registrations back after",
    "route changes failed",
    "lost (route changes / bindings / call records)",
    "unexpected at the gateway",
)


def _after(seconds: float | None) -> str:
    return "**never**" if seconds is None else f"{seconds:.2f} s"


def row(result: StepResult) -> list[str]:
    if result.not_run or result.calls is None:
        why = result.not_run
        said = f"**{why}**" if why.startswith(BROKE) else f"not run: {why}"
        return [result.name, said, *[""] * (len(COLUMNS) - 2)]
    calls, registrations, routes = result.calls, result.registrations, result.routes
    assert registrations is not None and routes is not None
    name = result.name + "".join(f" — **{overran}**" for overran in result.overran)
    return [
        name,
        str(len(calls.placed)),
        str(len(calls.failed)),
        str(len(result.dropped)),
        _after(calls.recovered_after(result.kill_at)),
        f"{len(registrations.failed)} of {len(registrations.placed)}",
        _after(registrations.recovered_after(result.kill_at)),
        f"{len(routes.failed)} of {len(routes.placed)}",
        _lost(result),
        ", ".join(f"{n} {kind}" for kind, n in sorted(result.unexpected.items())) or "none",
    ]


def _lost(result: StepResult) -> str:
    records = "not kept" if result.lost_records is None else str(result.lost_records)
    if not result.lost:
        return "none" if result.lost_records is not None else "none (no call records here)"
    return f"{result.lost_routes} / {result.lost_bindings} / {records}"


def alarming(result: StepResult) -> bool:
    """Whether `result` must fail the run (exit 1): something acknowledged lost, a load SIPp
    that hung, a step that broke or work that never came back after the kill."""
    never = any("never" in cell for cell in row(result)[4:7])
    return bool(result.lost or result.overran or result.not_run.startswith(BROKE) or never)


def table(results: list[StepResult]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(result)) + " |" for result in results]
    return "\n".join(lines) + "\n"


def section(
    results: list[StepResult], plan: Plan, command: str, started: datetime, machine: str
) -> str:
    when = started.strftime("%Y-%m-%d %H:%M UTC")
    return f"""{HEADING}

Written by the drill itself (`{command}`); do not edit by hand. Rerun it with
`make drill` (as root, for the VIP pair's namespaces; `python -m deploy.drill
--help` for the sizes). The platform is `deploy/drill/platform.py`: a Redis
primary, a replica and three Sentinels, a 3-node RabbitMQ cluster, PostgreSQL
for the call records, the Procfile's services as processes, and the VIP pair
of `deploy/vip/lab.py`. During every step SIPp places {plan.rate:g} calls a
second for {plan.window:g} s (each up {plan.hold_ms / 1000:g} s, then BYE) to the
calls' edge (the VIP for the box step), {plan.phones} phones refresh their
registrations through the other edge ({plan.register_rate:g} REGISTER pairs a
second, digest), and a gateway is written through the routing API every
second; {plan.kill_at:g} s in, the part is SIGKILLed and then restarted (a
process after 1 s; the old Redis primary as a replica once Sentinel named the
new one; the RabbitMQ node rejoining; the dead box rebooted as the backup).
The whole-DC step runs the same load on a lab of its own, `deploy/two_dc/lab.py`
(each DC its broker, edge, registrar and routing service; the Redis primary in
DC 1, its replica in DC 2): calls, registrations and route changes go to DC 2
while every DC 1 process is SIGKILLed; DC 1 is started again once the Sentinels
named DC 2's Redis the primary.

- *calls failed*: placed but never answered 200; *dropped mid-dialog*: answered,
  but their BYE got no 200; *back after*: from the kill until the first success
  (200 to an INVITE, to a REGISTER) of one placed after the kill and after the last
  failure: how long the kill held new work up, SIP retransmissions included (a few
  milliseconds when it held nothing up).
- *lost*: acknowledged and missing afterwards: a route change answered 200 not
  in the routing API, a registration answered 200 without a binding, a call
  whose BYE was answered 200 without a complete, answered record in PostgreSQL
  (the two-DC lab runs no accounting: no records there). The whole-DC step reads
  them back through DC 2, the DC that survived.
- *unexpected at the gateway*: requests the SIPp gateway's scenario did not expect
  at that point, by method (an INVITE resent after its 200 by an edge that had not
  yet read the 200, an ACK after the BYE, a request for a call it no longer knows):
  retransmissions it ignores (`-default_behaviors all,-abortunexp`) rather than
  aborting the call, counted from its error file so that none is hidden. A BYE
  resent after its 200 is answered again for 32 s (Timer J), as a UAS does: its
  200 may have died with the edge relaying it.
- A load SIPp still running {OVERRUN_GRACE:g} s past its own `-timeout` is stopped
  (its screen dumped first) and the step's row says so in bold.

{when}, {machine}:

{table(results)}"""


def write(page: Path, text: str) -> None:
    """Replace the drill's section of `page` (appended at its end the first time)."""
    current = page.read_text()
    start = current.find(HEADING + "\n")
    if start < 0:
        page.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    following = current.find("\n## ", start + len(HEADING))
    rest = current[following + 1 :] if following >= 0 else ""
    page.write_text(current[:start] + text + ("\n" + rest if rest else ""))
