"""The keepalived.conf a box runs: the template filled for it, accepted by keepalived itself."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy.vip.keepalived import CHECK, BoxConfig, check_config, render

pytestmark = pytest.mark.integration  # runs the keepalived program (deploy/test-packages.txt)

BOX = BoxConfig(
    router_id="edge-a",
    interface="eth0",
    source="198.51.100.2",
    peer="198.51.100.3",
    vip="198.51.100.10/28",
    priority=110,
    readyz_url="http://198.51.100.2:8080/readyz",
    peer_readyz_url="http://198.51.100.3:8080/readyz",
)


def test_a_rendered_box_is_accepted_by_keepalived(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    text = render(BOX)
    conf.write_text(text)
    assert check_config(conf) == ""
    assert "unicast_src_ip 198.51.100.2" in text and "\n        198.51.100.3\n" in text
    assert "198.51.100.10/28 dev eth0" in text and "priority 110" in text
    peer = "http://198.51.100.3:8080/readyz"
    assert f'script "{CHECK} http://198.51.100.2:8080/readyz {peer}"' in text
    assert "advert_int 0.5" in text and "nopreempt" in text


def test_keepalived_complaints_are_reported(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(render(replace(BOX, advert_int=0)))
    assert "Advert interval" in check_config(conf)


class Readyz:
    """A /readyz on loopback answering `status` (settable), for the check script to ask."""

    def __init__(self) -> None:
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                self.send_response(owner.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/readyz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def check(*urls: str) -> int:
    """The check's exit status, each request given 5 s (a loaded test machine's server may take
    more than keepalived's 0.8 s: this tests what it decides, not how fast)."""
    env = dict(os.environ, CHECK_EDGE_MAX_TIME="5")
    return subprocess.run([str(CHECK), *urls], env=env, check=False, timeout=30).returncode


def test_the_check_gives_the_vip_up_for_a_ready_peer_only() -> None:
    own, peer = Readyz(), Readyz()
    try:
        assert check(own.url, peer.url) == 0  # ready: keep (or take) the VIP
        own.status = 503
        assert check(own.url, peer.url) == 1  # not ready, the peer is: give it up
        assert check(own.url) == 1  # not ready, no peer named
        peer.status = 503
        assert check(own.url, peer.url) == 0  # neither ready: a shared trouble, keep it
        peer.close()
        assert check(own.url, peer.url) == 0  # the peer is gone: nobody better
    finally:
        own.close()
    assert check(own.url, peer.url) == 1  # no edge on this box at all
