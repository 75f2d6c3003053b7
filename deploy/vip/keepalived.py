"""One box's keepalived: its configuration from the template, and the daemon run in the box.

The template (``keepalived.conf.template``) is what an operator installs as
``/etc/keepalived/keepalived.conf``; :func:`render` fills it for one box so the
lab runs exactly the file the documentation shows.  VRRP goes unicast to the
peer box (no multicast needed on the network, and it works across a bridge of
network namespaces); the health check is ``check-edge`` against the edge's
``/readyz``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "keepalived.conf.template"
CHECK = HERE / "check-edge"
ADVERT_INTERVAL = 0.5
"""Seconds between two VRRP advertisements: the backup takes over 3 x this + skew after the
master's last one (≈1.8 s at priority 100), inside the 3 s the pair is held to."""


@dataclass(frozen=True)
class BoxConfig:
    """What differs between the two boxes' keepalived.conf (the rest is the template's)."""

    router_id: str
    interface: str
    source: str
    """This box's own address, VRRP's source."""
    peer: str
    """The other box's address."""
    vip: str
    """``address/prefix`` of the virtual IP."""
    priority: int
    readyz_url: str
    """This box's edge's /readyz."""
    peer_readyz_url: str
    """The other box's: this box gives the VIP up for a 503 of its own only if that one is ready."""
    vrid: int = 51
    advert_int: float = ADVERT_INTERVAL


def render(config: BoxConfig, check: Path = CHECK) -> str:
    """The template filled for one box (``substitute``: a field left out is an error)."""
    fields = {
        "router_id": config.router_id,
        "interface": config.interface,
        "source": config.source,
        "peer": config.peer,
        "vip": config.vip,
        "priority": str(config.priority),
        "vrid": str(config.vrid),
        "advert_int": f"{config.advert_int:g}",
        "readyz_url": config.readyz_url,
        "peer_readyz_url": config.peer_readyz_url,
        "check": str(check),
    }
    return Template(TEMPLATE.read_text()).substitute(fields)


def command(conf: Path, folder: Path, name: str) -> list[str]:
    """keepalived in the foreground, VRRP only, logging to its output, with its own pid files
    (the defaults under /run are shared by every keepalived of the machine)."""
    program = shutil.which("keepalived") or shutil.which("keepalived", path="/usr/sbin:/sbin")
    assert program is not None, "keepalived is missing: apt-get install -y keepalived"
    return [
        program, "--dont-fork", "--log-console", "--log-detail", "--vrrp", "--no_bfd",
        f"--use-file={conf}",
        f"--pid={folder / f'keepalived-{name}.pid'}",
        f"--vrrp_pid={folder / f'keepalived-{name}-vrrp.pid'}",
    ]  # fmt: skip # keepalived's options in rows


def check_config(conf: Path) -> str:
    """keepalived's own check of a configuration file: its complaints, empty when none."""
    report = conf.with_name(f"{conf.name}.check")
    report.unlink(missing_ok=True)  # keepalived appends to it
    argv = [*command(conf, conf.parent, "check")[:1], f"--config-test={report}", "-f", str(conf)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    text = report.read_text() if report.exists() else ""
    return text.strip() if done.returncode else ""
