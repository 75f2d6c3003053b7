"""SIPp as the benchmark's traffic: gateways that answer, a caller that dials.

Both scenarios follow the route set (see scenarios/), so every request of a
call — INVITE, ACK and BYE — crosses the proxy under test.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.proxy.errors import BenchError
from bench.proxy.processes import log_tail, spawn, stop_session
from bench.proxy.routing import LOOPBACK, RoutingTable
from bench.proxy.sipp_stats import CallCounts, parse_stat_file

SCENARIOS = Path(__file__).with_name("scenarios")
CALLER_SCENARIO = SCENARIOS / "caller.xml"
GATEWAY_SCENARIO = SCENARIOS / "gateway.xml"
NUMBERS_PER_FILE = 10_000
# Caps SIPp's error logs, which grow by one message per failed call under overload.
_MAX_LOG_BYTES = 20_000_000
# Socket buffers as large as the kernel allows by default (net.core.rmem_max
# is often 4 MiB): at thousands of calls per second SIPp's 64 KiB drops bursts.
_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
# SIPp exit codes for "ran to the end": 0 all calls succeeded, 1 some failed.
_COMPLETED = (0, 1)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One load step: ``calls`` calls offered at ``rate`` per second."""

    rate: int
    calls: int
    hold_min_ms: int
    hold_max_ms: int
    recv_timeout_ms: int

    @property
    def max_open_calls(self) -> int:
        """Room for every call that can be alive at once, so SIPp never throttles.

        A call lives at most its hold time plus one receive timeout; SIPp's own
        default limit would silently lower the offered rate under overload.
        """
        lifetime_s = (self.hold_max_ms + self.recv_timeout_ms) / 1000 + 1
        return math.ceil(self.rate * lifetime_s)


def write_numbers(path: Path, prefix: str) -> None:
    """Dialled numbers ``<prefix>0000``…, used in turn by the caller (-inf)."""
    lines = ["SEQUENTIAL", *(f"{prefix}{n:04d}" for n in range(NUMBERS_PER_FILE))]
    path.write_text("\n".join(lines) + "\n")


def _udp_bound(port: int) -> bool:
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/udp") as table:
        return any(line.split()[1] in wanted for line in list(table)[1:])


def _wait_bound(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    """SIPp binds before it reads its socket, so a bound port means ready."""
    deadline = time.monotonic() + timeout
    while not _udp_bound(port):
        if process.poll() is not None:
            raise BenchError(
                f"SIPp gateway on port {port} exited with {process.returncode}: {log_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"SIPp gateway did not bind port {port} within {timeout:g} s")
        time.sleep(0.05)


@contextmanager
def running_gateways(
    table: RoutingTable,
    workdir: Path,
    recv_timeout_ms: int,
    sipp: str = "sipp",
    scenario: Path = GATEWAY_SCENARIO,
) -> Iterator[None]:
    """One SIPp answering with ``scenario`` per gateway of ``table``, for the block."""
    with ExitStack() as stack:
        for gateway in table.gateways:
            log = workdir / f"gateway-{gateway.port}.log"
            argv = [
                sipp,
                "-sf",
                str(scenario),
                "-i",
                gateway.host,
                "-p",
                str(gateway.port),
                "-bind_local",
                "-nostdin",
                "-buff_size",
                str(_SOCKET_BUFFER_BYTES),
                "-recv_timeout",
                str(recv_timeout_ms),
                "-trace_err",
                "-error_file",
                str(workdir / f"gateway-{gateway.port}-errors.log"),
                "-max_log_size",
                str(_MAX_LOG_BYTES),
            ]
            process = spawn(argv, log, workdir)
            stack.callback(stop_session, process)
            _wait_bound(process, gateway.port, log, timeout=10.0)
        yield


def run_caller(
    plan: CallPlan,
    *,
    proxy_port: int,
    caller_port: int,
    numbers: Path,
    workdir: Path,
    tag: str,
    sipp: str = "sipp",
    scenario: Path = CALLER_SCENARIO,
) -> CallCounts:
    """Offer ``plan`` to the proxy (calls of ``scenario``) and wait until every call has ended."""
    stat = workdir / f"caller-{tag}.csv"
    log = workdir / f"caller-{tag}.log"
    argv = [
        sipp,
        "-sf",
        str(scenario),
        "-inf",
        str(numbers),
        "-i",
        LOOPBACK,
        "-p",
        str(caller_port),
        "-bind_local",
        "-nostdin",
        "-buff_size",
        str(_SOCKET_BUFFER_BYTES),
        "-r",
        str(plan.rate),
        "-m",
        str(plan.calls),
        "-l",
        str(plan.max_open_calls),
        "-recv_timeout",
        str(plan.recv_timeout_ms),
        "-set",
        "hold_min_ms",
        str(plan.hold_min_ms),
        "-set",
        "hold_max_ms",
        str(plan.hold_max_ms),
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        str(workdir / f"caller-{tag}-errors.log"),
        "-max_log_size",
        str(_MAX_LOG_BYTES),
        f"{LOOPBACK}:{proxy_port}",
    ]
    # Generous: offering takes calls/rate, the last call then ends within hold + timeout.
    timeout = plan.calls / plan.rate + (plan.hold_max_ms + plan.recv_timeout_ms) / 1000 * 2 + 30
    try:
        with log.open("wb") as errors:
            completed = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=workdir,
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError:
        raise BenchError(f"cannot start {sipp}: not found") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"SIPp caller still running after {timeout:.0f} s; see {log}") from None
    if completed.returncode not in _COMPLETED:
        raise BenchError(
            f"SIPp caller failed with exit code {completed.returncode}: {log_tail(log)}"
        )
    return parse_stat_file(stat)
