"""`free_port` never hands one port out twice: not in one process, nor across the processes
of one run sharing a claims directory (`make test` runs two pytest processes side by side);
nor one a connecting socket could take (the kernel's ephemeral range) or a process holds."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from deploy.labs.ports import (
    CLAIMS_VARIABLE,
    FLOOR,
    LOOPBACK,
    RTPENGINE_FLOOR,
    free_port,
    handout_range,
    phone_rtp_ports,
)

REPO = Path(__file__).resolve().parents[3]
PICKS = 300
HANDOUT = f"from deploy.labs.ports import free_port\nfor _ in range({PICKS}): print(free_port())"


def test_ports_claimed_by_another_process_are_never_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every port of the hand-out range is claimed but a few: only those few come."""
    ports = handout_range()
    spared = set(random.sample(ports, 40))
    for port in set(ports) - spared:
        (tmp_path / str(port)).touch()
    monkeypatch.setenv(CLAIMS_VARIABLE, str(tmp_path))
    handed = [free_port() for _ in range(5)]
    assert set(handed) <= spared
    assert len(set(handed)) == len(handed)
    assert all((tmp_path / str(port)).exists() for port in handed)


def test_no_port_of_the_kernels_ephemeral_range_is_handed_out() -> None:
    """A connecting socket takes its port from that range: it could take one handed out."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    handed = [free_port() for _ in range(PICKS)]
    assert not [port for port in handed if low <= port <= high]
    assert all(port >= FLOOR for port in handed)


def test_a_port_some_process_holds_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with ExitStack() as held:
        taken = set()
        for port in random.sample(handout_range(), 200):
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
            probe.listen()
            taken.add(port)
        monkeypatch.setattr(random, "choice", _first_then(sorted(taken)))
        assert free_port() not in taken


def _first_then(ports: list[int]) -> Callable[[Sequence[int]], int]:
    """A `random.choice` that offers `ports` first, then draws as usual."""
    offered = iter(ports)
    draw = random.Random(7).choice
    return lambda sequence: next(offered, None) or draw(sequence)


def test_two_processes_sharing_a_claims_directory_never_get_the_same_port(tmp_path: Path) -> None:
    env = {**os.environ, CLAIMS_VARIABLE: str(tmp_path / "claims")}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", HANDOUT], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    handed = [set(map(int, run.communicate(timeout=60)[0].split())) for run in runs]
    assert [len(ports) for ports in handed] == [PICKS, PICKS]
    assert not handed[0] & handed[1]
    claims = {int(claim.name): claim.read_text() for claim in (tmp_path / "claims").iterdir()}
    assert set(claims) == handed[0] | handed[1]
    for run, ports in zip(runs, handed, strict=True):
        assert {claims[port] for port in ports} == {f"{run.pid}\n"}


def test_without_a_claims_directory_a_process_remembers_what_it_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CLAIMS_VARIABLE, raising=False)
    handed = [free_port() for _ in range(PICKS)]
    assert len(set(handed)) == PICKS


def test_a_claims_path_that_is_not_a_directory_is_named_in_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    afile = tmp_path / "ports"
    afile.write_text("")
    monkeypatch.setenv(CLAIMS_VARIABLE, str(afile))
    with pytest.raises(RuntimeError, match=f"{CLAIMS_VARIABLE}=.*ports is not a directory"):
        free_port()


def test_the_phones_rtp_ports_are_never_handed_out_nor_rtpengines() -> None:
    low, high = map(int, phone_rtp_ports().split("-"))
    handed = handout_range()
    assert low <= high
    assert not set(range(low, high + 1)) & set(handed)
    assert high < RTPENGINE_FLOOR or low >= RTPENGINE_FLOOR
