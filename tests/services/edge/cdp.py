"""Headless Chromium driven over its DevTools protocol: start it on a page, evaluate in it.

Why no driver library: one command is needed (`Runtime.evaluate`, awaiting a
promise), and the test's WebSocket client speaks the protocol's transport.
Chromium picks its DevTools port itself (`--remote-debugging-port=0`) and
writes it to `DevToolsActivePort` in its profile directory.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.processes import stop_process
from tests.shared.sip.transport.ws_client import WsClient

FAKE_MEDIA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
"""A microphone without one, and its permission granted: JsSIP's getUserMedia succeeds."""
EVALUATION_TIME = 60.0
"""Seconds a step of the page may take (a registration, a whole call)."""


class ContextLostError(Exception):
    """The page navigated while an expression was evaluated in it."""


class Browser:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self._client: WsClient | None = None
        self._ids = 0

    @classmethod
    def start(cls, url: str, profile: Path, *flags: str) -> Browser:
        """Chromium headless on `url`, with its own profile (no state shared with any run)."""
        binary = shutil.which("chromium")
        assert binary is not None, "chromium is missing: apt-get install -y chromium"
        profile.mkdir(parents=True)
        log = profile.parent / "chromium.log"
        argv = [
            binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", *FAKE_MEDIA, *flags, url,
        ]  # fmt: skip # a command line reads best as one
        with log.open("wb") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not active.exists() or not active.read_text().strip():
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "Chromium wrote no DevToolsActivePort in 30 s"
            time.sleep(0.1)
        return cls(process, int(active.read_text().split()[0]), log)

    async def page(self) -> None:
        """Attach to the page (the first one Chromium opened)."""
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{self.port}/json/list")).json()
        page = next(target for target in targets if target["type"] == "page")
        path = "/" + page["webSocketDebuggerUrl"].split("/", 3)[3]
        self._client = await WsClient.connect(self.port, path=path, subprotocols=(), origin=None)
        self._client.read_timeout = EVALUATION_TIME  # an answer comes when the step is done

    async def ready(self, name: str) -> None:
        """Wait until the page has defined `window[name]`; a script error fails at once."""
        probe = f"window.{name} ? 'ready' : (window.pageError || 'loading')"
        async with asyncio.timeout(EVALUATION_TIME):
            while True:
                try:
                    state = await self.evaluate(probe)
                except ContextLostError:  # the page was still being loaded: its first context
                    continue
                if state == "ready":
                    return
                assert state == "loading", f"the page failed: {state}"
                await asyncio.sleep(0.05)

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise is awaited); raises on an error."""
        assert self._client is not None, "page() first"
        self._ids += 1
        ask = self._ids
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        message = {"id": ask, "method": "Runtime.evaluate", "params": params}
        self._client.send(json.dumps(message).encode())
        async with asyncio.timeout(EVALUATION_TIME):
            while True:
                answer = json.loads(await self._client.receive())
                if answer.get("id") == ask:
                    break
        if "Execution context was destroyed" in str(answer.get("error")):
            raise ContextLostError(expression)
        assert "result" in answer, f"{expression}: {answer}"
        result = answer["result"]
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        await asyncio.to_thread(stop_process, self.process, grace=5)
