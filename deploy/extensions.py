"""Build the compiled fast path: the hot modules by mypyc into `build/ext/`, and a manifest.

`python -m deploy.extensions` (every `make` target that runs or tests code, and the Docker
image's first stage) compiles `SOURCES` with mypyc (shipped with the pinned mypy), gcc and the
Python headers, then writes `build/extensions.json` naming each compiled module, its source and
that source's SHA-256; `shared/extensions.py` loads the build only while every hash still
matches.  Nothing is rebuilt when the manifest already matches the sources.  The compiler's
output goes to `build/extensions.log`.  A build that fails leaves no manifest, so every process
runs pure Python; the exit status says so (`make run` goes on, `make test` stops).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from mypy.version import __version__ as mypy_version

from shared.extensions import EXT, MANIFEST, ROOT, Build, disabled, interpreter, source_hash

GROUP = "callmesh"
"""mypyc's name for the build: its runtime is the top-level module `callmesh__mypyc`."""

HOT = (
    "shared/sip/*.py",
    "shared/sip/transaction/*.py",
    "shared/sip/auth/digest.py",
    "shared/sip/auth/offer.py",
    "shared/sip/transport/destination.py",
    "shared/contracts/unvalidated.py",
    "shared/keyed_hmac.py",
    "services/edge/proxy/*.py",
    # What the edge runs per message outside the proxy core: trust, routing-cache routes and
    # health, the location directory, dispatcher bookkeeping, policies (call limits and flood
    # counts among them), the prefix index, the routing index, address lists (ACLs),
    # unvalidated events and token HMACs.
    "services/edge/policy/__init__.py",
    "services/edge/policy/trust.py",
    "services/edge/policy/guard.py",
    "services/edge/policy/topology.py",
    "services/edge/policy/limits.py",
    "services/edge/protection/flood.py",
    "services/edge/location/directory.py",
    "services/edge/destinations/calls.py",
    "services/edge/destinations/selector.py",
    "shared/routing_table/cache/route.py",
    "shared/routing_table/index.py",
    "shared/acl.py",
    "shared/routing_table/cache/health.py",
    "shared/routing_table/prefixes.py",
    "shared/routing_table/prefix_layout.py",
    # Per call too: the gateway's number as it dials it, and whether its host needs DNS.
    "shared/routing_table/compiled.py",
    "shared/dns/locate.py",
    # Per new call, found still interpreted at the wire (a count of the edge's Python calls):
    # the route lookup, the caller's profile and peer, its limits, the fraud screen, the
    # branch's manipulations and topology, whether the B2BUA carries it.
    "shared/routing_table/cache/lookups.py",
    "services/edge/policy/callers.py",
    "shared/routing_table/peers.py",
    "shared/limits/table.py",
    "services/edge/policy/fraud.py",
    "services/edge/policy/routing.py",
    "shared/routing_table/manipulations.py",
    "shared/routing_table/modes.py",
    "services/edge/destinations/sets.py",
    # HEP capture: every message an edge receives or sends passes these when capture is on.
    "services/edge/runtime/capture.py",
    "services/edge/runtime/trace_ring.py",
    "shared/hep/codec.py",
    "shared/hep/mirror.py",
    "shared/hep/sender.py",
    # The runtime's side of every message: the UDP socket's reads and sends, the worker's
    # sockets and their hand-on, the driver that runs the core's actions.
    "shared/sip/transport/udp.py",
    "shared/clock.py",
    "services/edge/runtime/sockets.py",
    "services/edge/runtime/affinity.py",
    "services/edge/runtime/driver.py",
    "services/edge/runtime/loop_timer.py",
    # Per call event (seven a call): the publisher's backlog, the outbox journal's lines, and
    # the events' JSON that both use.
    "services/edge/runtime/publisher.py",
    "services/edge/runtime/journal.py",
    "services/edge/runtime/journal_lines.py",
    "shared/contracts/call_event_json.py",
    "shared/contracts/model_json.py",
)
"""The compiled modules' sources, as globs relative to the root."""

ACCELERATORS = (
    "shared/sip/_scan.c",
    "shared/sip/_uri.c",
    "shared/contracts/_construct.c",
    "shared/sip/transport/_datagrams.c",
    "services/edge/proxy/_branches.c",
    "shared/_keyed_hmac.c",
    "shared/sip/_values.c",
)
"""C modules built beside them, each named after its file (`shared.sip._scan`): the module
beside which it is written falls back to Python without it (aiohttp's `_http_parser.pyx`)."""
C_FLAGS = ("-O2", "-Wall")
"""Their compiler flags (no -Werror: a newer gcc's new warning must not cost the whole build)."""

INTERPRETED = frozenset({"shared/sip/errors.py"})
"""Left to Python: services subclass its exceptions, which a compiled class would forbid."""


def sources(root: Path = ROOT) -> list[str]:
    found = {str(p.relative_to(root)) for pattern in HOT for p in root.glob(pattern)}
    return sorted((found - INTERPRETED) | set(ACCELERATORS))


def module_of(source: str) -> str:
    """`shared/sip/__init__.py` → `shared.sip`, `shared/sip/uri.py` → `shared.sip.uri`."""
    parts = Path(source).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def manifest_for(names: list[str], root: Path = ROOT) -> Build:
    """The manifest of a build of `names` just made: each module's file under `build/ext`."""
    suffix = interpreter()
    modules: dict[str, tuple[str, str | None, str | None]] = {
        f"{GROUP}__mypyc": (f"{GROUP}__mypyc{suffix}", None, None)
    }
    for source in names:
        binary = str(Path(source).with_suffix(suffix))
        modules[module_of(source)] = (binary, source, source_hash(root / source))
    return Build(suffix, mypy_version, modules)


def current(names: list[str], root: Path = ROOT) -> bool:
    """Whether the manifest on disk is this mypy's build of exactly `names`, matching them."""
    try:
        build = Build.from_json((root / MANIFEST).read_text())
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    built = {source for _, source, _ in build.modules.values() if source is not None}
    same = build.compiler == mypy_version and built == set(names)
    return same and build.stale(root) is None


def compile_into(target: Path, names: list[str]) -> None:
    """mypyc and setuptools, in this process: C files in build/mypyc, modules under `target`."""
    from mypyc.build import mypycify
    from setuptools import Distribution, Extension

    python = [name for name in names if name.endswith(".py")]
    extensions = (
        mypycify(python, opt_level="3", group_name=GROUP, target_dir="build/mypyc")
        if python
        else []
    )
    extensions += [
        Extension(module_of(name), [name], extra_compile_args=list(C_FLAGS))
        for name in names
        if name.endswith(".c")
    ]
    distribution = Distribution({"name": GROUP, "ext_modules": extensions})
    command = distribution.get_command_obj("build_ext")
    command.build_lib = str(target)
    command.build_temp = "build/temp"
    distribution.run_command("build_ext")


def build(root: Path = ROOT) -> int:
    """Rebuild if the sources changed; 0 when the build serves them (or is turned off)."""
    if disabled():
        print("compiled build skipped: CALLMESH_NO_EXTENSIONS is set (pure Python)")
        return 0
    beside = [*root.glob("*__mypyc.*.so"), *(root / "shared").rglob("*.so")]
    for stray in [*beside, *(root / "services").rglob("*.so")]:
        stray.unlink()  # built beside the sources (the old `make fast`): they would shadow them
    names = sources(root)
    if current(names, root):
        return 0
    (root / "build").mkdir(exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)  # processes starting meanwhile run pure Python
    fresh = root / EXT.with_name("ext.new")
    shutil.rmtree(fresh, ignore_errors=True)
    built = manifest_for(names, root)  # the hashes of what is compiled, not of later edits
    log = root / "build/extensions.log"
    print(
        f"compiling {len(names)} modules, mypyc's and C (log: {log.relative_to(root)})", flush=True
    )
    with log.open("w") as output:
        done = subprocess.run(
            [sys.executable, "-m", "deploy.extensions", "--compile-into", str(fresh), *names],
            cwd=root,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    missing = [b for b, _, _ in built.modules.values() if not (fresh / b).is_file()]
    if done.returncode != 0 or missing:
        print(f"mypyc build failed ({log.relative_to(root)}): pure Python", file=sys.stderr)
        return 1
    shutil.rmtree(root / EXT, ignore_errors=True)
    fresh.rename(root / EXT)
    written = (root / MANIFEST).with_suffix(".new")
    written.write_text(built.to_json())
    written.rename(root / MANIFEST)
    print(f"compiled {len(names)} modules into {EXT}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--compile-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.compile_into is not None:
        compile_into(arguments.compile_into, arguments.names)
        return 0
    return build()


if __name__ == "__main__":
    sys.exit(main())
