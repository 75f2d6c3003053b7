"""``make up`` / ``make down``: run each Procfile entry as a background process.

A foreman-style runner in the foreground would tie the platform to a terminal;
operators want ``make up`` to return, logs in files and ``make down`` to stop
exactly what was started, so the pids are kept beside the logs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

PROCFILE = Path(__file__).with_name("Procfile")


def parse_procfile(text: str) -> dict[str, tuple[dict[str, str], list[str]]]:
    """``name: VAR=value ... command`` lines → name → (environment, argv)."""
    entries: dict[str, tuple[dict[str, str], list[str]]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        words = shlex.split(command)
        env: dict[str, str] = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        entries[name.strip()] = (env, words)
    return entries


def start(logs: Path) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    for name, (env, words) in parse_procfile(PROCFILE.read_text()).items():
        pidfile = logs / f"{name}.pid"
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            print(f"{name}: already running")
            continue
        argv = [sys.executable, *words[1:]] if words[:1] == ["python"] else words
        with (logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pidfile.write_text(str(process.pid))
        print(f"{name}: pid {process.pid}, log {logs / f'{name}.log'}")


def stop(logs: Path) -> None:
    for pidfile in sorted(logs.glob("*.pid")):
        pid = int(pidfile.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
            print(f"{pidfile.stem}: stopped")
        pidfile.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--logs", type=Path, default=Path("var/log"))
    args = parser.parse_args()
    (start if args.action == "start" else stop)(args.logs)


if __name__ == "__main__":
    main()
