"""The drill's order: the platform started once and each of its steps run in turn, then the
steps with a lab of their own (the whole DC: ``whole_dc.py``).

A step that breaks (a part that never came back) is a row saying why, and the drill
goes on: one broken part must not hide the others' rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.registrar import Phone
from deploy.drill import whole_dc
from deploy.drill.load import PASSWORD, Entry, phones, start_gateway
from deploy.drill.measure import Plan, Stage, StepResult, measure
from deploy.drill.platform import (
    CALLS_EDGE,
    DOMAIN,
    PHONES_EDGE,
    Platform,
    running_platform,
    vip_lab_possible,
)
from deploy.drill.steps import Step, steps
from deploy.labs.ports import LOOPBACK
from deploy.labs.postgres import drop_postgres, fresh_postgres
from deploy.processes import stop_process

BROKE = "the step broke"


def run_step(
    platform: Platform, step: Step, plan: Plan, phones: list[Phone], number: int
) -> StepResult:
    if step.not_run or step.kill is None or step.restore is None:
        return StepResult(step.name, step.not_run or "no kill defined")
    kill, restore = step.kill, step.restore
    stage = Stage(
        folder=platform.folder / f"step-{number}",
        calls=_entry(platform, step),
        registrations=Entry(LOOPBACK, platform.services[PHONES_EDGE].sip_port),
        phones=phones,
        routing=lambda: platform.api("routing"),
        registrar=lambda: platform.api("registrar"),
        records_url=platform.env["CALLMESH_ACCOUNTING_DATABASE_URL"],
        gateway_errors=platform.folder / "gateway.err",
    )
    return measure(
        stage, plan, step.name, lambda: kill(platform), lambda killed: restore(platform, killed)
    )


def drill(folder: Path, plan: Plan, keys: list[str]) -> list[StepResult]:
    """Each step of `keys` (all when empty), in the drill's order; the platform is started
    only for the steps that run on it, once; the steps not run (not possible here) reported
    with the reason."""
    vip_not_run = vip_lab_possible()
    chosen = list(enumerate((s for s in steps(vip_not_run) if not keys or s.key in keys), 1))
    results = {step.key: StepResult(step.name, step.not_run) for _, step in chosen}
    on_platform = [(n, step) for n, step in chosen if not step.own_lab and not step.not_run]
    if on_platform:
        results |= _on_platform(folder, plan, on_platform)
    for number, step in chosen:
        if step.own_lab and not step.not_run:
            results[step.key] = _guarded(
                step, partial(whole_dc.run, folder / f"step-{number}", plan, step.name)
            )
    return [results[step.key] for _, step in chosen]


def _on_platform(folder: Path, plan: Plan, chosen: list[tuple[int, Step]]) -> dict[str, StepResult]:
    needs_vip = any(step.via_vip for _, step in chosen)
    url, database = asyncio.run(fresh_postgres())
    try:
        with running_platform(folder, url, vip=needs_vip) as platform:
            gateway, port = start_gateway(folder, platform.gateway_host)
            try:
                platform.seed(port)
                drill_phones = phones(plan.phones, DOMAIN)
                platform.subscribe([phone.user for phone in drill_phones], PASSWORD)
                return {
                    step.key: _guarded(
                        step, partial(run_step, platform, step, plan, drill_phones, number)
                    )
                    for number, step in chosen
                }
            finally:
                stop_process(gateway)
    finally:
        asyncio.run(drop_postgres(database))


def _guarded(step: Step, run: Callable[[], StepResult]) -> StepResult:
    """One step; a step that breaks is reported, with why, and the drill goes on."""
    try:
        return run()
    except Exception as error:  # reported in the table, not swallowed
        return StepResult(step.name, f"{BROKE}: {type(error).__name__}: {error}"[:300])


def _entry(platform: Platform, step: Step) -> Entry:
    if step.via_vip:
        lab = platform.lab
        assert lab is not None
        return Entry(lab.vip, 5060, lab.caller.address, lab.caller.namespace)
    return Entry(LOOPBACK, platform.services[CALLS_EDGE].sip_port)
