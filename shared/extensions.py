"""The compiled fast path: load the mypyc build of the hot modules when it matches their sources.

`python -m deploy.extensions` (run by `make`, and by the Docker image's first stage) compiles
the SIP core, the proxy core and the edge's per-message modules with mypyc, and the C message
scan, URI and Via readers and Call-ID and CSeq readers (`shared/sip/_scan.c`, `_uri.c`,
`_values.c`), the events' model construction
(`shared/contracts/_construct.c`), the UDP burst reader and sender
(`shared/sip/transport/_datagrams.c`), the Via branches' hash
(`services/edge/proxy/_branches.c`) and the Record-Route tokens' HMAC (`shared/_keyed_hmac.c`),
into `build/ext/`, apart from the sources, and writes
`build/extensions.json`: every compiled module, its source and the SHA-256 that source had.
This module, run by `shared/__init__.py` before any other module of the project is imported,
puts a finder in front of the import system that answers those modules with their compiled
files, but only when every source still has its recorded hash and the build was made for this
interpreter.
So an edited source falls back to pure Python for every module (never compiled code older than
its source, never half a build), and `CALLMESH_NO_EXTENSIONS=1` forces pure Python (the tests'
second pass, mutation testing).

Why a finder rather than files beside the sources: a compiled module there shadows its
source until someone rebuilds, and the variable could not turn it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader, ModuleSpec, PathFinder
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
"""The directory holding `shared/` and `services/`: sources are named relative to it."""
EXT = Path("build/ext")
"""Where the compiled modules are, relative to the root: a tree of their own, apart from sources."""
MANIFEST = Path("build/extensions.json")
DISABLE = "CALLMESH_NO_EXTENSIONS"


def disabled() -> bool:
    """Whether the environment asks for pure Python (any value but empty or ``0``)."""
    return os.environ.get(DISABLE, "") not in ("", "0")


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpreter() -> str:
    """What a build must have been made for: the extension-module suffix names it."""
    return EXTENSION_SUFFIXES[0]


@dataclass(frozen=True, slots=True)
class Build:
    """A manifest: compiled module name → (its file, its source, the source's hash).

    mypyc's runtime module has no source (None, None).  `compiler` (the mypy version) only
    decides whether the builder must compile again: a build needs no compiler to load.
    """

    interpreter: str
    compiler: str
    modules: dict[str, tuple[str, str | None, str | None]]

    def to_json(self) -> str:
        fields = {"interpreter": self.interpreter, "compiler": self.compiler}
        return json.dumps({**fields, "modules": self.modules}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Build:
        data = json.loads(text)
        modules = {name: (entry[0], entry[1], entry[2]) for name, entry in data["modules"].items()}
        return cls(str(data["interpreter"]), str(data["compiler"]), modules)

    def stale(self, root: Path) -> str | None:
        """Why this build cannot serve the sources under `root`, or None if it can."""
        if self.interpreter != interpreter():
            return f"built for {self.interpreter}, not {interpreter()}"
        for binary, source, digest in self.modules.values():
            if not (root / EXT / binary).is_file():
                return f"{binary} is missing"
            if source is None:
                continue
            path = root / source
            if not path.is_file() or source_hash(path) != digest:
                return f"{source} changed since it was compiled"
        return None


class CompiledFinder:
    """Finds the build's modules by name, and the other modules of the packages it compiled.

    A compiled package's ``__path__`` is the build's directory (mypyc sets it from the file
    it was loaded from), which holds only compiled modules: its pure-Python modules and
    subpackages are looked up in its source directory instead.
    """

    def __init__(self, root: Path, build: Build) -> None:
        self._directory = root / EXT
        self._build = build
        self._packages = {
            name: str(root / Path(source).parent)
            for name, (_, source, _) in build.modules.items()
            if source is not None and source.endswith("/__init__.py")
        }

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        entry = self._build.modules.get(fullname)
        if entry is None:
            parent = self._packages.get(fullname.rpartition(".")[0])
            return None if parent is None else PathFinder.find_spec(fullname, [parent])
        where = str(self._directory / entry[0])
        return spec_from_file_location(
            fullname,
            where,
            loader=ExtensionFileLoader(fullname, where),
            submodule_search_locations=[self._packages[fullname]]
            if fullname in self._packages
            else None,
        )


def choose(root: Path) -> tuple[CompiledFinder | None, str]:
    """The finder for the build under `root` if it serves the sources, and which build, in words."""
    if disabled():
        return None, f"pure Python ({DISABLE} is set)"
    manifest = root / MANIFEST
    try:
        build = Build.from_json(manifest.read_text())
    except FileNotFoundError:
        return None, "pure Python (no compiled build: make fast)"
    except (ValueError, KeyError, TypeError, IndexError) as error:
        return None, f"pure Python (unreadable {manifest.name}: {error!r})"
    why = build.stale(root)
    if why is not None:
        return None, f"pure Python ({why}: make fast)"
    sources = [source for _, source, _ in build.modules.values() if source is not None]
    in_c = sum(source.endswith(".c") for source in sources)
    state = f"compiled by mypyc ({len(sources) - in_c} modules)" + (
        f" and {in_c} in C" if in_c else ""
    )
    return CompiledFinder(root, build), state


def _activate() -> str:
    finder, state = choose(ROOT)
    if finder is not None:
        sys.meta_path.insert(0, finder)
    return state


STATE = _activate()
"""Which build this process runs, in words, for the logs and benchmark figures."""
