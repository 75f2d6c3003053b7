"""One drill step measured: the load running, the part killed and restored, then what was lost.

A step runs against a `Stage`: where its calls and registrations go, which APIs
its route changes and the checks use, where its call records are.  The drill's
platform is one stage (``run.py``), DC 2 of the two-DC lab another
(``whole_dc.py``).

Losses are counted against what was acknowledged, and read back after the
step from the place an operator would look: a route change answered 200 must
be in the routing API, a registration answered 200 must have a binding in the
registrar's API, and a call whose BYE was answered 200 must have a complete,
answered record in the accounting database (where the stage runs accounting).

Every SIPp of the load is bounded: one still running well past its own
``-timeout`` is stopped, and the step says so (`StepResult.overran`) instead of
breaking or waiting for ever.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.registrar import Phone
from deploy.drill.load import (
    Entry,
    Outcome,
    RouteChanges,
    calling_within,
    outcome,
    place_calls,
    register_phones,
    registering_within,
    unexpected_at_gateway,
    user_of,
)
from deploy.processes import stop_process
from services.accounting.store import database_url

RECORDS_WITHIN = 120.0
"""Seconds the accounting service may take to have every record of a step's calls."""
OVERRUN_GRACE = 15.0
"""Seconds past its own -timeout a load SIPp may take to exit (its last calls' BYEs, a loaded
machine) before it counts as hung and is stopped."""


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


@dataclass(frozen=True)
class Stage:
    """Where a step's load goes, and where what it acknowledged is read back afterwards."""

    folder: Path
    calls: Entry
    registrations: Entry
    phones: list[Phone]
    routing: Callable[[], httpx.Client]
    registrar: Callable[[], httpx.Client]
    records_url: str
    """The accounting database; "" where the stage runs no accounting (records unchecked)."""
    gateway_errors: Path
    """The SIPp gateway's error file: what it did not expect is counted per step."""


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
    lost_records: int | None = 0
    """None: no call records where the step ran (no accounting), so none checked."""
    unexpected: Counter[str] = field(default_factory=Counter)
    """Messages the gateway did not expect (retransmissions its scenario ignored), by kind."""
    overran: list[str] = field(default_factory=list)
    """The load's SIPps that outlived their -timeout and were stopped, with what they showed."""

    @property
    def lost(self) -> int:
        return self.lost_routes + self.lost_bindings + (self.lost_records or 0)

    @property
    def dropped(self) -> list[str]:
        """Calls up (200 to the INVITE) whose BYE got no 200."""
        calls = self.calls
        return [] if calls is None else [c for c in calls.succeeded if c not in calls.ended]


Kill = Callable[[], tuple[object, float]]
"""The failure: returns what it killed and the wall-clock time the signal went."""
Restore = Callable[[object], None]
"""Given what the kill returned, brings the part back; returns once it is."""


def measure(stage: Stage, plan: Plan, name: str, kill: Kill, restore: Restore) -> StepResult:
    """The load on `stage` for `plan.window` s, `kill` `plan.kill_at` s in, then `restore`;
    then every acknowledged item read back."""
    folder = stage.folder
    folder.mkdir()
    calls, registrations = int(plan.rate * plan.window), int(plan.register_rate * plan.window)
    errors_from = stage.gateway_errors.stat().st_size if stage.gateway_errors.exists() else 0
    started = time.monotonic()
    load = {
        "calls": (
            place_calls(folder / "calls.log", stage.calls, plan.rate, calls, plan.hold_ms),
            calling_within(plan.rate, calls, plan.hold_ms),
        ),
        "registrations": (
            register_phones(
                folder / "registrations.log",
                stage.registrations,
                stage.phones,
                plan.register_rate,
                registrations,
            ),
            registering_within(plan.register_rate, registrations),
        ),
    }
    routes = RouteChanges(stage.routing, folder.name)
    routes.start()
    result = StepResult(name)
    try:
        time.sleep(plan.kill_at)
        killed, result.kill_at = kill()
        restore(killed)
        for kind, (process, within) in load.items():
            if not ended_by(process, started + within + OVERRUN_GRACE):
                result.overran.append(stop_hung(process, kind, within, folder))
    finally:  # a step that broke leaves no load behind to blur the next one
        for process, _ in load.values():
            stop_process(process, grace=2.0)
        result.routes = routes.stop()
    result.calls = outcome(folder / "calls.log", "up")
    result.registrations = outcome(folder / "registrations.log", "bound")
    result.unexpected = unexpected_at_gateway(stage.gateway_errors, errors_from)
    _count_losses(stage, result)
    return result


def ended_by(process: subprocess.Popen[bytes], deadline: float) -> bool:
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def stop_hung(process: subprocess.Popen[bytes], kind: str, within: float, folder: Path) -> str:
    """A load SIPp past its -timeout: its screen dumped (SIGUSR2: the calls per scenario
    message, in ``<scenario>_<pid>_screen.log``), then stopped; what to report."""
    process.send_signal(signal.SIGUSR2)
    time.sleep(1.0)  # SIPp dumps from its main loop: if that loop runs at all
    stop_process(process, grace=2.0)
    dumps = sorted(path.name for path in folder.glob(f"*_{process.pid}_screen.log"))
    where = f"its screen in {dumps[0]}" if dumps else "no screen dump: its main loop was stuck"
    return f"the {kind}' SIPp outlived its -timeout ({within:.0f} s): stopped, {where}"


def _count_losses(stage: Stage, result: StepResult) -> None:
    """Each acknowledged item read back; the calls without a record listed in the folder."""
    assert result.routes and result.registrations and result.calls
    with stage.routing() as client:
        result.lost_routes = sum(
            client.get(f"/v1/gateways/{gateway_id}").status_code != 200
            for gateway_id in result.routes.succeeded
        )
    domain = stage.phones[0].domain
    with stage.registrar() as client:
        for user in {user_of(item) for item in result.registrations.succeeded}:
            reply = client.get(f"/v1/registrations/sip:{user}@{domain}")
            bindings = reply.json().get("bindings", []) if reply.status_code == 200 else []
            result.lost_bindings += not bindings
    if not stage.records_url:
        result.lost_records = None
        return
    ended = set(result.calls.ended)
    missing = asyncio.run(_unrecorded(stage.records_url, ended))
    result.lost_records = len(missing)
    (stage.folder / "unrecorded.txt").write_text("".join(f"{call_id}\n" for call_id in missing))


async def _unrecorded(url: str, call_ids: set[str]) -> set[str]:
    """The calls of `call_ids` without a complete, answered record, once the accounting
    service has had `RECORDS_WITHIN` seconds to catch up (returns as soon as none is); each
    with its record's state and the events accounting has of it (which one never came)."""
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
            ids = {"ids": sorted(missing)}
            rows = await connection.execute(
                text("SELECT call_id, state, disposition FROM cdrs WHERE call_id = ANY(:ids)"), ids
            )
            found = {row[0]: f"{row[1]} {row[2]}" for row in rows}
            events = await connection.execute(
                text(
                    "SELECT call_id, type FROM call_events WHERE call_id = ANY(:ids) ORDER BY at_ms"
                ),
                ids,
            )
            received: dict[str, list[str]] = {}
            for call_id, kind in events:
                received.setdefault(call_id, []).append(kind)
    finally:
        await engine.dispose()
    return {
        f"{call_id} {found.get(call_id, 'no record')}: events {' '.join(kinds) or 'none'}"
        for call_id in missing
        for kinds in [received.get(call_id, [])]
    }
