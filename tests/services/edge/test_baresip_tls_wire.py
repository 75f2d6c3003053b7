"""A real softphone over TLS: Debian's baresip registers with digest over TLS, is called, calls out.

The all-in-one (`python -m services`) listens on TLS with a certificate from the
test's CA, which baresip trusts (`sip_cafile`); the phone's account names the
edge over TLS as its outbound proxy and answers calls by itself. A SIPp caller
dials it (over UDP, at the same edge), then it dials a number the routing table
sends to a SIPp gateway; it is driven over its `ctrl_tcp` socket (netstring JSON).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from deploy.labs.ports import free_port
from tests.baresip import write_config
from tests.services.edge.support import LOOPBACK, sipp, wait_bound
from tests.services.edge.tls_support import edge_certificates
from tests.services.test_all_in_one import running_all_in_one

pytestmark = [pytest.mark.wire, pytest.mark.integration]

USER = "tlsbare"
DOMAIN = "example.com"


def baresip_config(directory: Path, ca: Path, port: int, control: int, edge_tls: int) -> None:
    """A phone with no sound device, one account over TLS, and a control socket."""
    write_config(directory, port, control=control, cafile=ca)
    directory.joinpath("accounts").write_text(
        f"<sip:{USER}@{DOMAIN};transport=tls>;auth_pass=s3cret;answermode=auto;"
        f'outbound="sip:{LOOPBACK}:{edge_tls};transport=tls";regint=600\n'
    )


def command(control: int, name: str, params: str = "") -> None:
    """One baresip command over ctrl_tcp (a netstring of JSON)."""
    body = json.dumps({"command": name, "params": params, "token": name}).encode()
    with socket.create_connection((LOOPBACK, control), timeout=5) as sock:
        sock.sendall(b"%d:%s," % (len(body), body))
        sock.recv(65535)


def wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def test_baresip_registers_is_called_and_calls_over_tls(tmp_path: Path) -> None:
    baresip = shutil.which("baresip")
    assert baresip is not None, "baresip is missing: apt-get install -y baresip-core"
    ca, _, settings = edge_certificates(tmp_path)
    edge_tls = free_port()
    with running_all_in_one(tmp_path, listen=f",tls:{LOOPBACK}:{edge_tls}", **settings) as (
        sip,
        http,
        _,
    ):
        api = f"http://{LOOPBACK}:{http}"
        body = {"domain": DOMAIN, "password": "s3cret"}
        httpx.put(f"{api}/v1/subscribers/{USER}", json=body).raise_for_status()
        gateway_port = free_port()
        gateway = {"address": f"sip:{LOOPBACK}:{gateway_port}"}
        httpx.put(f"{api}/v1/gateways/g1", json=gateway).raise_for_status()
        rule = {"prefix": "1604", "gateways": ["g1"]}
        httpx.put(f"{api}/v1/rules/r1", json=rule).raise_for_status()
        config = tmp_path / "baresip"
        config.mkdir()
        control = free_port()
        baresip_config(config, ca.cert, free_port(), control, edge_tls)
        log_path = tmp_path / "baresip.log"
        with log_path.open("wb") as log:
            phone = subprocess.Popen(
                [baresip, "-f", str(config), "-s", "-t", "60"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                bindings: list[dict[str, object]] = []

                def registered() -> bool:
                    nonlocal bindings
                    reply = httpx.get(f"{api}/v1/registrations/sip:{USER}@{DOMAIN}")
                    bindings = reply.json()["bindings"] if reply.status_code == 200 else []
                    return bool(bindings)

                wait_for(registered, "registration")
                trace = log_path.read_text(errors="replace")
                assert bindings[0]["transport"] == "tls", bindings
                assert "algorithm=MD5" in trace  # challenged, and answered, over TLS

                caller = sipp(
                    tmp_path,
                    "dial",
                    free_port(),
                    remote=sip,
                    args=("-s", USER, "-key", "domain", DOMAIN, "-set", "hold", "500"),
                )
                assert caller.wait() == 0, log_path.read_text(errors="replace")[-4000:]

                answering = sipp(tmp_path, "gateway", gateway_port)
                wait_bound(gateway_port)
                command(control, "dial", "16045550001")
                wait_for(lambda: answering.received("ACK") == 1, "answered call")
                command(control, "hangup")
                assert answering.wait() == 0, log_path.read_text(errors="replace")[-4000:]
                invite = answering.messages().split("INVITE sip:", 1)[1]
                assert invite.startswith(f"16045550001@{LOOPBACK}:{gateway_port}")
                assert "Via: SIP/2.0/TLS" in invite  # the phone's own Via: it came over TLS
            finally:
                phone.terminate()
                phone.wait(10)
