"""Guessers and scanners on the wire, against edge A.

Real processes (two edges, the registrar, routing), real RabbitMQ and Redis.
The guesser's wrong answers are counted (the registrar reports them, edge A
counts them in Redis) until alice is blocked: then even her right password
is refused, until an operator clears the block through edge A's API.  The
log lines are read by fail2ban-regex with the filter of docs/security.md.
A scanner sharing the phones' address is dropped while the phones that
authenticate are served, until the API clears its flag.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.registrar import Phone
from deploy.labs.ports import free_port
from shared.sip.message import Response
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import (
    LOOPBACK,
    REPO,
    SCENARIOS,
    SipClient,
    sip_request,
    sipp,
)
from tests.services.edge.test_subscribers_wire import exchange, raw_phone, register

pytestmark = [pytest.mark.wire, pytest.mark.integration]

BLOCK_AFTER = 4
DELAY_AFTER = 2
DELAY = 1.0
GUESSES = 6


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("guesser-wire")


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[Cluster]:
    with running_cluster(
        workdir,
        auth_block_after=str(BLOCK_AFTER),
        auth_delay_after=str(DELAY_AFTER),
        auth_delay=str(DELAY),
    ) as running:
        yield running


def guesser(workdir: Path, cluster: Cluster, user: str, guess: str, calls: int) -> int:
    scenario = workdir / "guesser-now.xml"
    text = (SCENARIOS / "guesser.xml").read_text()
    scenario.write_text(
        text.replace("username=[user] password=[guess]", f"username={user} password={guess}")
    )
    keys = ("-key", "user", user, "-key", "domain", DOMAIN, "-auth_uri", DOMAIN)
    run = sipp(
        workdir,
        scenario,
        free_port(),
        remote=cluster.a.sip_port,
        calls=calls,
        args=(*keys, "-l", "1"),
    )
    code = run.wait(60)
    answered = calls_answered(run.messages())
    assert len(answered["401"]) == BLOCK_AFTER, run.errors()  # challenged until blocked
    assert len(answered["403"]) == calls, run.errors()
    return code


def calls_answered(trace: str) -> dict[str, set[str]]:
    """Status → the Call-IDs SIPp received it for (retransmissions counted once)."""
    found: dict[str, set[str]] = {"401": set(), "403": set()}
    for block in trace.split("-----------------------------------------------"):
        status = re.search(r"message received \[\d+\] bytes :\s*SIP/2\.0 (\d{3})", block)
        call_id = re.search(r"^Call-ID: (\S+)", block, re.M)
        if status and call_id and status.group(1) in found:
            found[status.group(1)].add(call_id.group(1))
    return found


def until_challenged(phone: Phone, client: SipClient, within: float = 5.0) -> Response:
    """REGISTER until the edge challenges (401) rather than refuses (403) or drops it."""
    deadline = time.monotonic() + within
    client.sock.settimeout(0.5)  # a dropped attempt must not eat the whole wait
    try:
        while True:
            try:
                response = exchange(client, phone.register())
            except TimeoutError:
                response = None
            if (response is not None and response.status == 401) or time.monotonic() > deadline:
                assert response is not None and response.status == 401, response
                return response
            time.sleep(0.05)
    finally:
        client.sock.settimeout(5.0)


def fail2ban_filter() -> str:
    """The filter exactly as docs/security.md gives it to operators."""
    docs = (REPO / "docs" / "security.md").read_text()
    found = re.search(r"```ini\n(# /etc/fail2ban/filter\.d/callmesh\.conf\n.*?)```", docs, re.S)
    assert found is not None, "docs/security.md lost its fail2ban filter"
    return found.group(1)


def test_a_guesser_is_blocked_and_a_clear_lets_the_right_password_in(
    cluster: Cluster, workdir: Path
) -> None:
    cluster.subscriber("alice")
    assert guesser(workdir, cluster, "alice", "letmein", GUESSES) != 0  # the last calls failed
    with cluster.a.http() as api:
        blocks = api.get("/v1/protection/blocks").json()["items"]
        assert [(b["kind"], b["key"]) for b in blocks] == [("account", f"alice@{DOMAIN}")]
        metrics = api.get("/metrics").text
    assert 'callmesh_edge_auth_blocked_total{kind="account"} 1.0' in metrics
    # Blocked: her right password too, with no challenge to answer.
    phone, client = raw_phone(cluster, "alice")
    try:
        assert exchange(client, phone.register()).status == 403
        with cluster.a.http() as api:
            cleared = api.delete(f"/v1/protection/blocks/account/alice@{DOMAIN}")
        assert cleared.status_code == 204
        challenge = until_challenged(phone, client)  # the clear reaches the workers in ms
        phone.learn(challenge)
        assert exchange(client, phone.register()).status == 200
        # Cleared, the account's failures count afresh (and the source's, cleared too):
        # from the second failure on, the 403 is held back.
        with cluster.a.http() as api:
            assert api.delete(f"/v1/protection/blocks/source/{LOOPBACK}").status_code == 204
        phone.learn(exchange(client, phone.register()))
        started = time.monotonic()
        assert exchange(client, phone.register(password="wrong")).status == 403
        first = time.monotonic() - started
        phone.learn(exchange(client, phone.register()))
        started = time.monotonic()
        assert exchange(client, phone.register(password="wrong")).status == 403
        assert time.monotonic() - started >= DELAY > first  # only the second waited
    finally:
        client.close()
    log = "".join(path.read_text() for path in sorted(cluster.a.workdir.glob("edge-*.log")))
    lines = [line for line in log.splitlines() if '"logger":"callmesh.auth"' in line]
    wrong = [line for line in lines if "reason=wrong-credentials" in line]
    assert len(wrong) == BLOCK_AFTER + 2, lines  # SIPp's guesses, then the two after the clear
    blocked = [line for line in lines if "reason=blocked" in line]
    assert len(blocked) >= GUESSES - BLOCK_AFTER + 1, lines  # (+ any while the clear spread)
    assert len(wrong) + len(blocked) == len(lines)
    logfile = workdir / "edge-a-auth.log"
    logfile.write_text(log)
    filter_path = workdir / "callmesh.conf"
    filter_path.write_text(fail2ban_filter())
    found = subprocess.run(
        ["fail2ban-regex", "-o", "ip", str(logfile), str(filter_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert found.stdout.split() == [LOOPBACK] * len(lines)


def test_a_scanner_on_a_phones_address_is_dropped_but_the_phone_is_served_until_cleared(
    cluster: Cluster,
) -> None:
    """Item 8: an svmap run from behind the phones' NAT (here: 127.0.0.1, like them)."""
    cluster.subscriber("bob")
    phone, client = raw_phone(cluster, "bob")
    scanner = SipClient(cluster.a.sip_port)
    try:
        assert register(phone, client).status == 200  # bob knows his challenge
        svmap = sip_request(
            "OPTIONS",
            f"sip:100@{LOOPBACK}",
            "udp",
            scanner.port,
            extra="User-Agent: friendly-scanner\r\n",
        )
        scanner.send(svmap)
        wait_listed(cluster, "scanner", LOOPBACK)
        # The same address: bob's authenticated refresh is served...
        assert exchange(client, phone.register()).status == 200
        # ...a request without credentials is not (a scanner's), nor the scanner's own.
        stranger = Phone("bob", DOMAIN, PASSWORD, host=LOOPBACK, port=client.port)
        client.sock.settimeout(1.0)
        client.send(stranger.register())
        with pytest.raises(TimeoutError):
            client.final()
        client.sock.settimeout(5.0)
        with cluster.a.http() as api:
            cleared = api.delete(f"/v1/protection/blocks/scanner/{LOOPBACK}")
        assert cleared.status_code == 204
        assert until_challenged(stranger, client).status == 401  # the positive control
    finally:
        client.close()
        scanner.close()


def wait_listed(cluster: Cluster, kind: str, key: str, within: float = 10.0) -> None:
    """Until the API lists the block (each edge records its own as it starts)."""
    deadline = time.monotonic() + within
    with cluster.a.http() as api:
        while time.monotonic() < deadline:
            items = api.get(f"/v1/protection/blocks?kind={kind}").json()["items"]
            if any(item["key"] == key for item in items):
                return
            time.sleep(0.05)
    raise AssertionError(f"no {kind} block of {key} listed")
