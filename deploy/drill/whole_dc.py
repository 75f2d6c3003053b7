"""The drill's whole-DC step: DC 1 of the two-DC lab killed while DC 2 carries the load.

The platform of the other steps is one site; losing a data centre needs two, so this
step starts `deploy.two_dc.lab` (each DC its own broker, edge, registrar and routing
service; the Redis primary in DC 1, its replica in DC 2, a Sentinel per DC and a
tie-breaker).  Through DC 1 it writes the route to the drill's SIPp gateway and the
phones' subscriptions (the deployment's data, there before the failure); then the
drill's load runs at DC 2: SIPp calls into DC 2's edge, the phones registering
through it, a route change a second through DC 2's routing API.  The kill is every
DC 1 process SIGKILLed (`TwoDcLab.kill_dc`: edge, services, broker, Redis primary,
Sentinel); the restore waits for the Sentinels to name DC 2's Redis the primary and
starts DC 1 again as its machines coming back (`TwoDcLab.restart_dc`: its Redis a
replica of DC 2's, its broker with its data).

Checked afterwards through DC 2, the DC that survived: every route change answered
200 is in its routing API, every phone whose REGISTER was answered 200 has a binding
in its registrar's API.  The lab runs no accounting service, so this step checks no
call records (its row says so).
"""

from __future__ import annotations

import time
from pathlib import Path

from deploy.drill.load import PASSWORD, Entry, phones, start_gateway
from deploy.drill.measure import Plan, Stage, StepResult, measure
from deploy.labs.ports import LOOPBACK
from deploy.processes import stop_process
from deploy.two_dc.lab import DOMAIN, TwoDcLab, two_dc_lab

KILLED, SERVING = 1, 2
"""DC 1 dies (it holds the Redis primary: the harder loss); DC 2 takes the load."""


def run(folder: Path, plan: Plan, name: str) -> StepResult:
    """Both DCs started in `folder`, the load at DC 2, DC 1 killed and restarted; everything
    stopped after."""
    folder.mkdir(parents=True)
    with two_dc_lab(folder / "two-dc") as lab:
        gateway, port = start_gateway(folder, LOOPBACK)
        try:
            route: dict[str, dict[str, object]] = {
                "gateways/drill-gw": {"address": f"sip:{LOOPBACK}:{port}"},
                "rules/drill": {"group": "0", "prefix": "1", "gateways": ["drill-gw"]},
            }
            lab.wait_routed(SERVING, lab.put(KILLED, route))
            drill_phones = phones(plan.phones, DOMAIN)
            for phone in drill_phones:
                lab.subscriber(phone.user, PASSWORD, dc=KILLED)
            serving = lab.dcs[SERVING]
            stage = Stage(
                folder=folder / "load",
                calls=Entry(LOOPBACK, serving.edge_sip),
                registrations=Entry(LOOPBACK, serving.edge_sip),
                phones=drill_phones,
                routing=lambda: serving.api(serving.routing_http),
                registrar=lambda: serving.api(serving.registrar_http),
                records_url="",
                gateway_errors=folder / "gateway.err",
            )
            return measure(stage, plan, name, lambda: _kill(lab), lambda _: _restore(lab))
        finally:
            stop_process(gateway)


def _kill(lab: TwoDcLab) -> tuple[object, float]:
    killed_at = time.time()
    lab.kill_dc(KILLED)
    return KILLED, killed_at


def _restore(lab: TwoDcLab) -> None:
    """DC 2's Redis named primary by the Sentinels, then DC 1 back beside DC 2."""
    lab.wait_primary(SERVING)
    lab.restart_dc(KILLED)
