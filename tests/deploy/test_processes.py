"""stop_process on real child processes: a polite one ends on SIGTERM, a deaf one is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from deploy.processes import stop_process

DEAF = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(1, flush=True); time.sleep(60)"
)


def start(code: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()  # it is running (and has set its handlers)
    return process


def test_a_process_that_ends_on_sigterm_is_not_killed() -> None:
    process = start("import time; print(1, flush=True); time.sleep(60)")
    stop_process(process)
    assert process.returncode == -signal.SIGTERM


def test_a_process_deaf_to_sigterm_is_killed_after_the_grace() -> None:
    process = start(DEAF)
    started = time.monotonic()
    stop_process(process, grace=0.3)
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started >= 0.3  # it had its grace first


def test_a_process_already_gone_is_left_alone() -> None:
    process = start("print(1, flush=True)")
    process.wait()
    stop_process(process)
    assert process.returncode == 0
