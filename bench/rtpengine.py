"""What relaying a call's media costs the edge: an ng offer, answer and delete per call.

Run ``python -m bench.rtpengine [--calls N] [--concurrency N]`` (or ``python -m
bench rtpengine``). A local rtpengine (``deploy/rtpengine.py``, user space) takes
``--calls`` calls, each an ``offer`` of a real SDP, its ``answer`` and its
``delete``, ``--concurrency`` calls at a time. Printed: calls/s, the client's
CPU per call (this process's user + system time over the calls: what an edge
would spend on top of the SIP), the round-trip median and p99 per command, and
the sessions left on the daemon afterwards (must be 0). The daemon's own CPU is
not counted: it runs on the media host.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from deploy.rtpengine import running_rtpengine
from shared.rtpengine.client import RtpengineClient
from shared.rtpengine.instances import Instance

OFFER_SDP = (
    "v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
ANSWER_SDP = (
    "v=0\r\no=callee 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


async def one_call(client: RtpengineClient, n: int, rtts: dict[str, list[float]]) -> None:
    call_id, tags = f"bench-{n}@edge", {"from-tag": f"f{n}", "to-tag": f"t{n}"}
    started = time.perf_counter()
    await client.offer(call_id, {"from-tag": tags["from-tag"], "sdp": OFFER_SDP})
    offered = time.perf_counter()
    await client.command("answer", call_id, {**tags, "sdp": ANSWER_SDP})
    answered = time.perf_counter()
    await client.command("delete", call_id, {"from-tag": tags["from-tag"]})
    deleted = time.perf_counter()
    rtts["offer"].append(offered - started)
    rtts["answer"].append(answered - offered)
    rtts["delete"].append(deleted - answered)


async def run(instance: Instance, calls: int, concurrency: int) -> dict[str, float]:
    client = RtpengineClient((instance,), timeout=1.0, retries=2)
    await client.start()
    rtts: dict[str, list[float]] = {"offer": [], "answer": [], "delete": []}
    gate = asyncio.Semaphore(concurrency)

    async def gated(n: int) -> None:
        async with gate:
            await one_call(client, n, rtts)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(gated(n) for n in range(calls)))
    used, elapsed = time.process_time() - cpu, time.perf_counter() - wall
    left = (await client.request(instance, "list", {})).body.get("calls")
    client.close()
    figures = {
        "calls/s": calls / elapsed,
        "client CPU µs/call": used / calls * 1e6,
        "sessions left": float(len(left) if isinstance(left, list) else -1),
    }
    for command, values in rtts.items():
        ordered = sorted(values)
        figures[f"{command} median ms"] = statistics.median(ordered) * 1e3
        figures[f"{command} p99 ms"] = ordered[int(len(ordered) * 0.99) - 1] * 1e3
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="200 calls")
    options = parser.parse_args()
    calls = 200 if options.quick else options.calls
    with tempfile.TemporaryDirectory() as folder, running_rtpengine(Path(folder)) as daemon:
        figures = asyncio.run(run(daemon.instance, calls, options.concurrency))
    print(f"{calls} calls (offer + answer + delete), {options.concurrency} at a time")
    print(f"{'figure':<24}{'value':>12}")
    for name, value in figures.items():
        print(f"{name:<24}{value:>12.2f}")
    if figures["sessions left"] != 0:
        raise SystemExit("rtpengine still holds sessions after every delete")


if __name__ == "__main__":
    main()
