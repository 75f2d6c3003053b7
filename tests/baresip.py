"""The configuration of the baresip phones the wire tests start (Debian's `baresip-core`).

One writer, so that what every such phone needs is said once: no sound device (files in,
/dev/null out), SIP on loopback, and its RTP ports where no test's handed-out port is
(`deploy.labs.ports.phone_rtp_ports`). Each test writes its own `accounts` file.
"""

from __future__ import annotations

from pathlib import Path

from deploy.labs.ports import LOOPBACK, phone_rtp_ports

MODULES = Path("/usr/lib/baresip/modules")


def write_config(
    directory: Path, port: int, *, control: int | None = None, cafile: Path | None = None
) -> None:
    """`directory`/config: SIP on loopback's `port`; with `control`, the ctrl_tcp socket there
    (and the menu it drives); with `cafile`, the CAs a TLS server must chain to."""
    lines = ["poll_method poll", f"sip_listen {LOOPBACK}:{port}"]
    if cafile is not None:
        lines.append(f"sip_cafile {cafile}")
    lines += [f"rtp_ports {phone_rtp_ports()}", f"module_path {MODULES}"]
    lines += ["module g711.so", "module_app account.so"]
    if control is not None:
        lines += ["module_app menu.so", "module_app ctrl_tcp.so"]
        lines.append(f"ctrl_tcp_listen {LOOPBACK}:{control}")
    lines += ["audio_player aufile,/dev/null", "audio_source aufile,/dev/null"]
    directory.joinpath("config").write_text("".join(f"{line}\n" for line in lines))
