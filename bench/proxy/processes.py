"""Child processes of the benchmark: started in their own session, stopped whole.

Proxies and SIPp are started in a new session so that stopping one also
reaches anything it forked, and nothing outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from bench.proxy.errors import BenchError
from deploy.processes import stop_process

_LOG_TAIL_BYTES = 2000


def log_tail(path: Path) -> str:
    """The end of a process log, for error messages that show why it died."""
    try:
        data = path.read_bytes()[-_LOG_TAIL_BYTES:]
    except FileNotFoundError:
        return "(no log)"
    return data.decode(errors="replace").strip() or "(empty log)"


def spawn(
    argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr in ``log``."""
    with log.open("wb") as output:
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise BenchError(f"cannot start {argv[0]}: {error}") from None


def stop_session(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL whatever is left of its session (forked workers)."""
    stop_process(process)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
