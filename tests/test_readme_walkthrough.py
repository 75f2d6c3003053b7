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
  would re-run it;
- the platform's log line the prose promises after the gateway is enabled again
  (``PROBED_UP``) must appear, and the platform must stop cleanly, without a traceback.

The README's ports (SIP 5060, HTTP 8080, the gateway's 5080) are replaced by free ones,
so that the test never meets a ``make run`` left running on this machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.health_support import wait_until
from tests.services.edge.support import REPO, wait_bound
from tests.shared.api.support import Running, start, stop, wait_ready

pytestmark = [pytest.mark.wire, pytest.mark.integration]

SECTION = "## Five minutes"
LEFT_RUNNING = "(leave it running)"
BLOCK_TIMEOUT = 60.0
PROMISE_DEADLINE = 30.0  # above the health service's 10 s probe interval
PROBED_UP = "gw:gw1 is up: answered 200"  # a log line the README's prose promises


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
    ports: dict[str, str] = field(default_factory=lambda: {"5080": str(free_port())})
    platform: Running | None = None
    terminals: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def localise(self, script: str) -> str:
        return re.sub(r"\b(5060|8080|5080)\b", lambda m: self.ports[m.group(1)], script)

    def start_platform(self) -> None:
        """What ``make run`` runs, on its own ports, with an empty data directory."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMESH_")}
        env["CALLMESH_DATA_DIR"] = str(self.workdir / "var")
        self.platform = start("platform", "services", env, self.workdir)
        self.ports |= {"5060": str(self.platform.sip_port), "8080": str(self.platform.http_port)}
        wait_ready(self.platform)

    def log(self) -> str:
        return "" if self.platform is None else "\n".join(self.platform.lines()[-30:])

    def start_terminal(self, script: str) -> None:
        """A block left running (SIPp as the gateway), in its own process group."""
        output = self.workdir / f"terminal-{len(self.terminals)}.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", self.localise(script)],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip  (argument groups on one line)
        self.terminals.append((process, output))
        if "-p 5080" in script:
            wait_bound(int(self.ports["5080"]))
        assert process.poll() is None, output.read_text(errors="replace")

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", self.localise(script)],
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )  # fmt: skip  (argument groups on one line)

    def stop(self) -> None:
        """SIGTERM to each terminal's process group, then SIGKILL; the platform last."""
        for process, _ in self.terminals:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self.platform is not None:
            stop([self.platform])


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    started = Walk(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_every_command_of_the_walkthrough_works_as_written(walk: Walk) -> None:
    readme = (REPO / "README.md").read_text()
    blocks = walkthrough(readme)
    commands = [block for block in blocks if block.kind == "sh"]
    assert commands and commands[0].text.startswith("make run "), "it starts the platform"
    assert any("sipp -sf" in block.text and "-m 1" in block.text for block in commands)

    for index, block in enumerate(blocks):
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if block.kind == "text":
            assert blocks[index - 1].kind == "sh", "expected output follows its command block"
        elif LEFT_RUNNING in block.text.splitlines()[0]:
            if block.text.startswith("make run "):
                walk.start_platform()
            else:
                walk.start_terminal(block.text)
        elif following is not None and following.kind == "text":
            _until_promised(walk, block.text, following.text.splitlines())
        else:
            result = walk.run(block.text)
            assert result.returncode == 0, _report(walk, block.text, result)

    assert f"`{PROBED_UP}`" in readme
    platform = walk.platform
    assert platform is not None
    wait_until(
        lambda: any(f'"msg":"{PROBED_UP}"' in line for line in platform.lines()),
        PROMISE_DEADLINE,
        lambda: f"no {PROBED_UP!r} in the platform's log: {walk.log()}",
    )
    platform.process.send_signal(signal.SIGTERM)
    assert platform.process.wait(15) == 0
    assert not any("Traceback" in line for line in platform.lines())


def _until_promised(walk: Walk, script: str, promised: list[str]) -> None:
    """Run `script` until it exits 0 with every promised line in its output, within a deadline."""
    results: list[subprocess.CompletedProcess[str]] = []

    def kept() -> bool:
        results.append(walk.run(script))
        lines = set(results[-1].stdout.splitlines())
        return results[-1].returncode == 0 and set(promised) <= lines

    wait_until(
        kept,
        PROMISE_DEADLINE,
        lambda: f"promised {promised}; " + _report(walk, script, results[-1]),
    )


def _report(walk: Walk, script: str, result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{walk.localise(script)!r} exited {result.returncode}\n"
        f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}\n"
        f"platform: {walk.log()}"
    )
