"""An edge pair on a virtual IP (keepalived, VRRP) losing its active box mid-call.

Two boxes (network namespaces on a bridge, ``deploy.vip.lab``) each run an edge
listening on the VIP and keepalived with the deployment's own configuration;
SIPp calls the VIP from a third namespace, the SIPp gateways and rtpengine sit
on the bridge's host side.  Calls are set up through box a; then every process
of box a is SIGKILLed (keepalived too: nothing removes the VIP from it, the LAN
follows box b's gratuitous ARPs).  Box b must hold the VIP within 3 s, new
calls must find the VIP answering again within the move time (OPTIONS probed
every 20 ms from the callers' namespace), and the calls set up through box a
must end normally through box b, whichever side hangs up — relayed ones
deleting their rtpengine session (the signed Record-Route says the call is
relayed, the Call-ID's hash names the instance).

Sizes: ``CALLMESH_TEST_VIP_CALLS`` calls set up before the failure, for each
side hanging up (default 5).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest

from deploy.labs.ports import free_port
from deploy.processes import stop_process
from deploy.rtpengine import Daemon, running_rtpengine
from deploy.vip.lab import Lab, vip_lab
from deploy.vip.probe import outage
from tests.conftest import RABBITMQ_URL, REDIS_URL
from tests.services.edge.support import (
    REPO,
    SCENARIOS,
    Sipp,
    remove_namespace,
    sipp,
    stop_all_sipp,
)
from tests.services.edge.test_media_wire import sessions

pytestmark = [pytest.mark.wire, pytest.mark.integration, pytest.mark.lab]

CALLS = int(os.environ.get("CALLMESH_TEST_VIP_CALLS", "5"))
HTTP_PORT = 8080
TOKEN = "vip-test-token"
MOVE_WITHIN = 3.0
CHECK_MOVE_WITHIN = 5.0
"""An edge turning not ready: two failed checks a second apart, then the VIP moves at once."""
HOLD_MS = 5000 + 100 * CALLS
"""Long enough for the calls to be set up (10 a second) and outlive box a's death and the
VIP's move."""


def key() -> str:
    return "1:" + base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass
class Pair:
    lab: Lab
    routing_port: int
    daemons: list[Daemon]
    """The rtpengine instances both edges relay through (none unless asked for)."""

    def put(self, records: dict[str, dict[str, object]]) -> None:
        """PUT each body at the routing service; returns once both edges route with it."""
        with httpx.Client(base_url=f"http://127.0.0.1:{self.routing_port}", timeout=10) as client:
            replies = [client.put(f"/v1/{path}", json=body) for path, body in records.items()]
        version = max(reply.raise_for_status().json()["version"] for reply in replies)
        for box in ("a", "b"):
            until(partial(self.routed, box, version), f"box {box} not routing with {version}")

    def routed(self, box: str, version: int) -> bool:
        return self.metric(box, "callmesh_edge_routing_version") >= version

    def metric(self, box: str, name: str) -> float:
        address = self.lab.boxes[box].address
        text = httpx.get(
            f"http://{address}:{HTTP_PORT}/metrics",
            headers={"authorization": f"Bearer {TOKEN}"},
            timeout=5,
        ).text
        for line in text.splitlines():
            metric, _, value = line.partition(" ")
            if metric == name:
                return float(value)
        return 0.0


def until(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@contextmanager
def running_pair(workdir: Path, rtpengines: int = 0) -> Iterator[Pair]:
    """The lab, a routing service on loopback, `rtpengines` rtpengine daemons on the bridge's
    host side, an edge in each box, keepalived in each (box a first, so it is the master);
    everything stopped and the namespace removed after."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    routing_port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        lab = stack.enter_context(vip_lab(workdir, REDIS_URL, RABBITMQ_URL))
        stack.callback(remove_namespace, namespace)
        stack.callback(stop_all_sipp)
        base = dict(os.environ, CALLMESH_NAMESPACE=namespace, CALLMESH_LOG_LEVEL="INFO")
        with (workdir / "routing.log").open("wb") as log:
            routing = subprocess.Popen(
                [sys.executable, "-m", "services.routing"], cwd=REPO, stdout=log, stderr=log,
                env=dict(base, CALLMESH_RABBITMQ_URL=RABBITMQ_URL, CALLMESH_REDIS_URL=REDIS_URL,
                         CALLMESH_HTTP_LISTEN=f"127.0.0.1:{routing_port}"),
            )  # fmt: skip # one process
        stack.callback(stop_process, routing)
        daemons = [
            stack.enter_context(running_rtpengine(workdir, ports=200, address=lab.host))
            for _ in range(rtpengines)
        ]
        relay = {
            "CALLMESH_RTPENGINE": ",".join(daemon.instance.name for daemon in daemons),
            "CALLMESH_RTPENGINE_PING_INTERVAL": "1",
        }
        shared = dict(
            base,
            CALLMESH_API_TOKEN=TOKEN,
            CALLMESH_RECORD_ROUTE_KEYS=key(),
            CALLMESH_TOPOLOGY_KEYS=key(),
            CALLMESH_OVERLOAD_LAG_MS="0",  # calls, not load shedding, are tested here
            CALLMESH_FR_TIMEOUT="5",
            **(relay if daemons else {}),
        )
        for box in lab.boxes.values():
            lab.start_edge(box, dict(shared, **lab.edge_settings(box, HTTP_PORT)))
        for box in lab.boxes.values():
            lab.wait_ready(box, HTTP_PORT)
        lab.start_keepalived(lab.boxes["a"], 110, HTTP_PORT)
        lab.wait_holder(lab.boxes["a"], 15)
        lab.start_keepalived(lab.boxes["b"], 100, HTTP_PORT)
        yield Pair(lab, routing_port, daemons)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def gateway(pair: Pair, workdir: Path, scenario: str | Path, calls: int, *args: str) -> int:
    """A SIPp gateway on the bridge's host side; its port."""
    port = free_port(pair.lab.host)
    sipp(workdir, scenario, port, calls=calls, host=pair.lab.host, args=args)
    deadline = time.monotonic() + 10
    while True:  # SIPp binds before it reads: a bound port means it is listening
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((pair.lab.host, port))
            except OSError:
                return port
        assert time.monotonic() < deadline, f"no gateway on {pair.lab.host}:{port}"
        time.sleep(0.05)


def caller(pair: Pair, workdir: Path, scenario: str, number: str, calls: int, *args: str) -> Sipp:
    """SIPp in the callers' namespace placing `calls` calls to `number` at the VIP."""
    lab = pair.lab
    return sipp(
        workdir, scenario, free_port(), remote=5060, calls=calls,
        host=lab.caller.address, remote_host=lab.vip, netns=lab.caller.namespace,
        args=("-s", number, "-r", "10", "-l", str(calls), *args),
    )  # fmt: skip # SIPp's addresses together


def no_session(daemon: Daemon) -> bool:
    return sessions(daemon) == []


def bye_to_vip(workdir: Path, vip: str) -> Path:
    """gateway_sends_bye.xml sending its BYE to the VIP (the scenario's is loopback's)."""
    text = (SCENARIOS / "gateway_sends_bye.xml").read_text()
    path = workdir / "gateway_sends_bye_vip.xml"
    path.write_text(text.replace('host="127.0.0.1"', f'host="{vip}"'))
    return path


def fail_box_a(pair: Pair, watch_for: float) -> tuple[float, float]:
    """Box a's processes SIGKILLed while the callers' side probes the VIP: (seconds until box b
    holds the VIP, seconds until the VIP answered again), both from the kill."""
    lab = pair.lab
    prober = lab.start_probe(watch_for)
    time.sleep(0.5)  # the probe is sending
    lab.kill(lab.boxes["a"])
    failed_at = time.monotonic()
    moved = lab.wait_holder(lab.boxes["b"], 10)
    out, _ = prober.communicate(timeout=watch_for + 10)
    return moved, outage(json.loads(out)["sent"], failed_at)


def test_calls_set_up_through_the_active_box_end_through_the_other_when_it_dies(
    workdir: Path,
) -> None:
    with running_pair(workdir / "lab") as pair:
        hold = ("-set", "hold", str(HOLD_MS))
        port = gateway(pair, workdir, "gateway", CALLS + 3)
        hanging_up = gateway(pair, workdir, bye_to_vip(workdir, pair.lab.vip), CALLS,
                             *hold, "-set", "bye_port", "5060")  # fmt: skip # SIPp's options
        pair.put({
            "gateways/gw": {"address": f"sip:{pair.lab.host}:{port}"},
            "gateways/hangs-up": {
                "address": f"sip:{pair.lab.host}:{hanging_up}",
                "topology_hiding": {"mask_call_id": True},  # box b must restore its BYE
            },
            "rules/gw": {"prefix": "1777", "gateways": ["gw"]},
            "rules/hangs-up": {"prefix": "1778", "gateways": ["hangs-up"]},
        })  # fmt: skip # the table as a table
        callers = [
            caller(pair, workdir, "caller", "17770001", CALLS, *hold),
            caller(pair, workdir, "caller_takes_bye", "17780001", CALLS),
        ]
        until(lambda: pair.metric("a", "callmesh_edge_calls_set_up_total") == 2 * CALLS,
              f"calls not set up: {pair.lab.logs()}")  # fmt: skip # one wait
        assert pair.metric("b", 'callmesh_edge_requests_total{method="INVITE"}') == 0

        moved, unanswered = fail_box_a(pair, watch_for=4.0)

        assert moved <= MOVE_WITHIN, pair.lab.logs()
        assert unanswered <= moved + 0.5, (unanswered, moved)
        for sent in callers:  # each BYE answered 200 end to end, whichever side sent it
            assert sent.wait(40) == 0, sent.errors() + pair.lab.logs()
        byes = 'callmesh_edge_requests_total{method="BYE"}'  # retransmissions count too
        until(lambda: pair.metric("b", byes) >= 2 * CALLS, "the BYEs did not all cross box b")
        assert caller(pair, workdir, "caller", "17770002", 3, "-set", "hold", "0").wait(30) == 0
        assert pair.metric("b", "callmesh_edge_calls_set_up_total") == 3
        print(f"VIP moved in {moved:.3f} s; the VIP answered again {unanswered:.3f} s after")


def test_a_relayed_calls_bye_through_the_other_box_deletes_its_rtpengine_session(
    workdir: Path,
) -> None:
    """Relayed calls (two rtpengine instances) set up through box a, box a dies, the callers'
    BYEs go through box b: no session is left on either instance."""
    with running_pair(workdir / "lab", rtpengines=2) as pair:
        port = gateway(pair, workdir, "media_gateway", CALLS, "-mp", str(free_port(pair.lab.host)))
        pair.put({
            "gateways/relayed": {"address": f"sip:{pair.lab.host}:{port}", "media_relay": "always"},
            "rules/relayed": {"prefix": "1779", "gateways": ["relayed"]},
        })  # fmt: skip # the table as a table
        sent = caller(
            pair, workdir, "media_caller", "17790001", CALLS,
            "-mp", str(free_port()), "-set", "hold", str(HOLD_MS),
        )  # fmt: skip # SIPp's options
        until(lambda: pair.metric("a", "callmesh_edge_calls_set_up_total") == CALLS,
              f"calls not set up: {pair.lab.logs()}")  # fmt: skip # one wait
        held = {daemon.instance.name: len(sessions(daemon)) for daemon in pair.daemons}
        assert sum(held.values()) == CALLS, held
        relayed = pair.metric("a", "callmesh_edge_media_relayed_calls_total")
        assert relayed == CALLS

        moved, _ = fail_box_a(pair, watch_for=2.5)

        assert moved <= MOVE_WITHIN, pair.lab.logs()
        assert sent.wait(40) == 0, sent.errors() + pair.lab.logs()
        for daemon in pair.daemons:
            until(partial(no_session, daemon), f"left on {daemon.instance.name}", within=10)
        print(f"sessions per rtpengine before the failure: {held}; VIP moved in {moved:.3f} s")


def ready(pair: Pair, box: str) -> bool:
    url = f"http://{pair.lab.boxes[box].address}:{HTTP_PORT}/readyz"
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:  # too slow to say: not ready either
        return False


def test_the_vip_stays_while_neither_edge_is_ready_and_goes_to_the_first_ready_one(
    workdir: Path,
) -> None:
    """Redis cut from both boxes: both edges answer /readyz 503, yet the VIP stays on box a and
    calls go on — the one up ends, a new one is routed from the edge's caches (the first call
    cached the VIP's domain: a read the edge has not cached fails without Redis, 503); Redis back
    for box b only: box a's check now fails (its peer is ready) and box b takes the VIP."""
    with running_pair(workdir / "lab") as pair:
        lab = pair.lab
        a, b = lab.boxes["a"], lab.boxes["b"]
        port = gateway(pair, workdir, "gateway", 4)
        pair.put({
            "gateways/gw": {"address": f"sip:{lab.host}:{port}"},
            "rules/gw": {"prefix": "1776", "gateways": ["gw"]},
        })  # fmt: skip # the table as a table
        assert caller(pair, workdir, "caller", "17760001", 1, "-set", "hold", "0").wait(30) == 0
        held = caller(pair, workdir, "caller", "17760002", 1, "-set", "hold", "8000")
        until(lambda: pair.metric("a", "callmesh_edge_calls_set_up_total") == 2, "not set up")
        for box in (a, b):
            lab.cut(box, lab.redis_url)
        until(lambda: not ready(pair, "a") and not ready(pair, "b"), "still ready without Redis")
        time.sleep(4.0)  # four rounds of keepalived's check (two failures would mean FAULT)
        assert lab.holds(a) and not lab.holds(b), lab.logs()
        assert caller(pair, workdir, "caller", "17760003", 1, "-set", "hold", "0").wait(30) == 0
        assert held.wait(30) == 0, held.errors()

        lab.mend(b)
        until(lambda: ready(pair, "b"), "box b not ready with Redis back")
        moved = lab.wait_holder(b, 10)
        assert moved <= CHECK_MOVE_WITHIN, lab.logs()
        assert caller(pair, workdir, "caller", "17760004", 1, "-set", "hold", "0").wait(30) == 0
        assert pair.metric("b", "callmesh_edge_calls_set_up_total") == 1
        print(f"box b held the VIP {moved:.3f} s after its edge was ready")
