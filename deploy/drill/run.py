"""One drill step: the load running, the part killed and restored, then what was lost.

Losses are counted against what was acknowledged, and read back after the
step from the place an operator would look: a route change answered 200 must
be in the routing API, a registration answered 200 must have a binding in the
registrar's API, and a call whose BYE was answered 200 must have a complete,
answered record in the accounting database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.registrar import Phone
from deploy.drill.load import (
    PASSWORD,
    Entry,
    Outcome,
    RouteChanges,
    outcome,
    phones,
    place_calls,
    register_phones,
    start_gateway,
    user_of,
)
from deploy.drill.platform import (
    CALLS_EDGE,
    DOMAIN,
    PHONES_EDGE,
    Platform,
    running_platform,
    vip_lab_possible,
)
from deploy.drill.steps import Step, steps
from deploy.labs.postgres import drop_postgres, fresh_postgres
from deploy.processes import stop_process
from services.accounting.store import database_url

BROKE = "the step broke"
RECORDS_WITHIN = 120.0
"""Seconds the accounting service may take to have every record of a step's calls."""


@dataclass(frozen=True)
class Plan:
    rate: float = 200.0
    """Calls placed per second."""
    window: float = 20.0
    """Seconds of load per step (the kill comes `kill_at` in)."""
    kill_at: float = 5.0
    hold_ms: int = 3000
    """How long each call is up before its BYE: calls up across the kill must end normally."""
    phones: int = 300
    register_rate: float = 20.0
    """Registrations per second, the phones in turn: each refreshes every phones / rate s."""


@dataclass
class StepResult:
    name: str
    not_run: str = ""
    calls: Outcome | None = None
    registrations: Outcome | None = None
    routes: Outcome | None = None
    kill_at: float = 0.0
    lost_routes: int = 0
    lost_bindings: int = 0
    lost_records: int = 0

    @property
    def lost(self) -> int:
        return self.lost_routes + self.lost_bindings + self.lost_records

    @property
    def dropped(self) -> list[str]:
        """Calls up (200 to the INVITE) whose BYE got no 200."""
        calls = self.calls
        return [] if calls is None else [c for c in calls.succeeded if c not in calls.ended]


def run_step(
    platform: Platform, step: Step, plan: Plan, phones: list[Phone], number: int
) -> StepResult:
    if step.not_run or step.kill is None or step.restore is None:
        return StepResult(step.name, step.not_run or "no kill defined")
    folder = platform.folder / f"step-{number}"
    folder.mkdir()
    entry = _entry(platform, step)
    calls = place_calls(
        folder / "calls.log", entry, plan.rate, int(plan.rate * plan.window), plan.hold_ms
    )
    registering = register_phones(
        folder / "registrations.log",
        platform.services[PHONES_EDGE].sip_port,
        phones,
        plan.register_rate,
        int(plan.register_rate * plan.window),
    )
    routes = RouteChanges(platform, f"step{number}")
    routes.start()
    result = StepResult(step.name)
    try:
        time.sleep(plan.kill_at)
        killed, result.kill_at = step.kill(platform)
        step.restore(platform, killed)
        limit = plan.window + plan.hold_ms / 1000 + 90
        for process in (calls, registering):
            process.wait(limit)
    finally:  # a step that broke leaves no load behind to blur the next one
        for process in (calls, registering):
            stop_process(process, grace=2.0)
        result.routes = routes.stop()
    result.calls = outcome(folder / "calls.log", "up")
    result.registrations = outcome(folder / "registrations.log", "bound")
    _count_losses(platform, result, folder)
    return result


def drill(folder: Path, plan: Plan, keys: list[str]) -> list[StepResult]:
    """The platform started once, then each step of `keys` (all when empty) in the drill's
    order; the steps not run (not wired, not possible here) reported with the reason."""
    vip_not_run = vip_lab_possible()
    chosen = [step for step in steps(vip_not_run) if not keys or step.key in keys]
    needs_vip = any(step.via_vip and not step.not_run for step in chosen)
    url, database = asyncio.run(fresh_postgres())
    try:
        with running_platform(folder, url, vip=needs_vip) as platform:
            gateway, port = start_gateway(platform)
            try:
                platform.seed(port)
                drill_phones = phones(plan.phones)
                platform.subscribe([phone.user for phone in drill_phones], PASSWORD)
                return [
                    _guarded(platform, step, plan, drill_phones, number)
                    for number, step in enumerate(chosen, 1)
                ]
            finally:
                stop_process(gateway)
    finally:
        asyncio.run(drop_postgres(database))


def _guarded(
    platform: Platform, step: Step, plan: Plan, phones: list[Phone], number: int
) -> StepResult:
    """One step; a step that breaks (a part that never came back) is reported, with why,
    and the drill goes on to the next: one broken part must not hide the others' rows."""
    try:
        return run_step(platform, step, plan, phones, number)
    except Exception as error:  # reported in the table, not swallowed
        return StepResult(step.name, f"{BROKE}: {type(error).__name__}: {error}"[:300])


def _entry(platform: Platform, step: Step) -> Entry:
    if step.via_vip:
        lab = platform.lab
        assert lab is not None
        return Entry(lab.vip, 5060, lab.caller.address, lab.caller.namespace)
    return Entry("127.0.0.1", platform.services[CALLS_EDGE].sip_port)


def _count_losses(platform: Platform, result: StepResult, folder: Path) -> None:
    """Each acknowledged item read back; the calls without a record listed in `folder`."""
    assert result.routes and result.registrations and result.calls
    with platform.api("routing") as client:
        result.lost_routes = sum(
            client.get(f"/v1/gateways/{gateway_id}").status_code != 200
            for gateway_id in result.routes.succeeded
        )
    with platform.api("registrar") as client:
        for user in {user_of(item) for item in result.registrations.succeeded}:
            reply = client.get(f"/v1/registrations/sip:{user}@{DOMAIN}")
            bindings = reply.json().get("bindings", []) if reply.status_code == 200 else []
            result.lost_bindings += not bindings
    ended = set(result.calls.ended)
    missing = asyncio.run(_unrecorded(platform.env["CALLMESH_ACCOUNTING_DATABASE_URL"], ended))
    result.lost_records = len(missing)
    (folder / "unrecorded.txt").write_text("".join(f"{call_id}\n" for call_id in missing))


async def _unrecorded(url: str, call_ids: set[str]) -> set[str]:
    """The calls of `call_ids` without a complete, answered record, once the accounting
    service has had `RECORDS_WITHIN` seconds to catch up (returns as soon as none is)."""
    engine = create_async_engine(database_url(url, ""))
    query = text("SELECT call_id FROM cdrs WHERE state = 'complete' AND disposition = 'answered'")
    missing = set(call_ids)
    deadline = time.monotonic() + RECORDS_WITHIN
    try:
        while missing and time.monotonic() < deadline:
            async with engine.connect() as connection:
                rows = await connection.execute(query)
                missing -= {row[0] for row in rows}
            if missing:
                await asyncio.sleep(2.0)
        async with engine.connect() as connection:  # what there is of them, to read
            rows = await connection.execute(
                text("SELECT call_id, state, disposition FROM cdrs WHERE call_id = ANY(:ids)"),
                {"ids": sorted(missing)},
            )
            found = {row[0]: f"{row[1]} {row[2]}" for row in rows}
    finally:
        await engine.dispose()
    return {f"{call_id} {found.get(call_id, 'no record')}" for call_id in missing}
