"""A real MD5-only phone registers with the default settings: Debian's baresip 1.0.

baresip (libre) gives up on a 401 as soon as one of its challenges names an
algorithm other than MD5 ("Function not implemented"), whatever the order,
so a default that offered SHA-256 too locked it and its kind out.  It runs
headless on loopback with a config directory of its own, against the
all-in-one (`python -m services`) with no CALLMESH_* setting but its ports.
Needs the Debian package `baresip-core`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from deploy.labs.ports import free_port
from tests.baresip import write_config
from tests.services.test_all_in_one import all_in_one

__all__ = ["all_in_one"]  # the fixture

pytestmark = [pytest.mark.wire, pytest.mark.integration]

AOR = "sip:oldphone@example.com"


def baresip_config(directory: Path, port: int, edge_port: int) -> None:
    """A phone with no sound device (files in, /dev/null out) and one account."""
    write_config(directory, port)
    directory.joinpath("accounts").write_text(
        f'<{AOR}>;auth_pass=s3cret;outbound="sip:127.0.0.1:{edge_port}";regint=600\n'
    )


def test_baresip_registers_with_the_default_digest_settings(
    all_in_one: tuple[int, int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    sip, http, _ = all_in_one
    baresip = shutil.which("baresip")
    assert baresip is not None, "baresip is missing: apt-get install -y baresip-core"
    api = f"http://127.0.0.1:{http}"
    body = {"domain": "example.com", "password": "s3cret"}
    httpx.put(f"{api}/v1/subscribers/oldphone", json=body).raise_for_status()
    config = tmp_path / "baresip"
    config.mkdir()
    baresip_config(config, free_port(), sip)
    log = (tmp_path / "baresip.log").open("wb")
    phone = subprocess.Popen(
        [baresip, "-f", str(config), "-s", "-t", "30"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        bindings: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        while not bindings and time.monotonic() < deadline and phone.poll() is None:
            reply = httpx.get(f"{api}/v1/registrations/{AOR}")
            bindings = reply.json()["bindings"] if reply.status_code == 200 else []
            time.sleep(0.2)
        trace = (tmp_path / "baresip.log").read_text(errors="replace")
        assert bindings, trace
        assert str(bindings[0]["user_agent"]).startswith("baresip v1.")
        assert "algorithm=MD5" in trace and "SHA-256" not in trace
    finally:
        phone.terminate()
        phone.wait(10)
        log.close()
