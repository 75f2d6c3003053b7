"""The README's five-minute walkthrough, run as written, so that the README cannot rot.

The section "## Five minutes" of README.md is read block by block:

- a ```sh block whose first line says "(leave it running)" is a terminal the reader leaves
  open: ``make run`` is started as what it runs, ``python -m services`` (with an empty
  data directory), any other such block in the background, until the end of the test;
- every other ```sh block runs to completion with ``bash -e -o pipefail`` from the
  repository's root and must exit 0 (``curl -f`` fails on an HTTP error, SIPp on a
  failed call);
- a ```text block after a ```sh block is output the README promises: each of its lines
  must be a line of that block's output.  The platform applies events asynchronously,
  so such a block is run again until it shows them, within a deadline, as a reader
  would re-run it.

The README's ports (SIP 5060, HTTP 8080, the gateway's 5080) are replaced by free ones,
so that the test never meets a ``make run`` left running on this machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services.edge.support import LOOPBACK, REPO, free_port, wait_bound

pytestmark = [pytest.mark.wire, pytest.mark.integration]

SECTION = "## Five minutes"
LEFT_RUNNING = "(leave it running)"
README_PORTS = ("5060", "8080", "5080")
BLOCK_TIMEOUT = 60.0
PROMISE_DEADLINE = 30.0  # above the health service's 10 s probe interval


@dataclass(frozen=True)
class Block:
    kind: str  # "sh" or "text"
    text: str


def walkthrough(readme: str) -> list[Block]:
    """The fenced blocks of the README's walkthrough section, in order."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end >= 0 else len(readme)]
    return [
        Block(kind, text)
        for kind, text in re.findall(r"^```(\w+)\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    ]


@dataclass
class Walk:
    """The ports the walkthrough runs on, and the processes it left running."""

    workdir: Path
    ports: dict[str, int]
    running: list[tuple[subprocess.Popen[bytes], Path]]

    def localise(self, script: str) -> str:
        return re.sub(r"\b(5060|8080|5080)\b", lambda m: str(self.ports[m.group(1)]), script)

    def start_platform(self) -> None:
        sip, http = self.ports["5060"], self.ports["8080"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMESH_")}
        env |= {
            "CALLMESH_SIP_LISTEN": f"udp:{LOOPBACK}:{sip},tcp:{LOOPBACK}:{sip}",
            "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{http}",
            "CALLMESH_DATA_DIR": str(self.workdir / "var"),
        }
        process = self._spawn([sys.executable, "-m", "services"], "platform.log", env)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{LOOPBACK}:{http}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert process.poll() is None, self.output(0)
            assert time.monotonic() < deadline, f"the platform did not come up: {self.output(0)}"
            time.sleep(0.1)

    def start_background(self, script: str) -> None:
        index = len(self.running)
        process = self._spawn(["bash", "-c", self.localise(script)], f"terminal-{index}.log")
        if "-p 5080" in script:
            wait_bound(self.ports["5080"])
        assert process.poll() is None, self.output(index)

    def _spawn(
        self, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.workdir / log_name
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append((process, log))
        return process

    def output(self, index: int) -> str:
        return self.running[index][1].read_text(errors="replace")[-4000:]

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", self.localise(script)],
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )

    def stop(self) -> None:
        """SIGTERM to each process group started here (the platform last), then SIGKILL."""
        for process, _ in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    started = Walk(tmp_path, {port: free_port() for port in README_PORTS}, [])
    try:
        yield started
    finally:
        started.stop()


def test_every_command_of_the_walkthrough_works_as_written(walk: Walk) -> None:
    blocks = walkthrough((REPO / "README.md").read_text())
    commands = [block for block in blocks if block.kind == "sh"]
    assert commands and commands[0].text.startswith("make run "), (
        "the walkthrough starts the platform"
    )
    assert any("sipp -sf" in block.text and "-m 1" in block.text for block in commands)

    for index, block in enumerate(blocks):
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if block.kind == "text":
            assert blocks[index - 1].kind == "sh", "expected output follows its command block"
        elif LEFT_RUNNING in block.text.splitlines()[0]:
            if block.text.startswith("make run "):
                walk.start_platform()
            else:
                walk.start_background(block.text)
        elif following is not None and following.kind == "text":
            _until_promised(walk, block.text, following.text.splitlines())
        else:
            result = walk.run(block.text)
            assert result.returncode == 0, _report(walk, block.text, result)

    platform = walk.running[0][0]
    platform.send_signal(signal.SIGTERM)
    assert platform.wait(15) == 0
    assert "Traceback" not in walk.output(0)


def _until_promised(walk: Walk, script: str, promised: list[str]) -> None:
    """Run `script` until it exits 0 with every promised line in its output, within a deadline."""
    deadline = time.monotonic() + PROMISE_DEADLINE
    while True:
        result = walk.run(script)
        if result.returncode == 0 and set(promised) <= set(result.stdout.splitlines()):
            return
        assert time.monotonic() < deadline, f"promised {promised}; " + _report(walk, script, result)
        time.sleep(0.5)


def _report(walk: Walk, script: str, result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{walk.localise(script)!r} exited {result.returncode}\n"
        f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}\n"
        f"platform: {walk.output(0)}"
    )
