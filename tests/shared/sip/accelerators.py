"""The C modules (`shared/sip/_scan.c`, `_uri.c`, `_values.c`, `shared/contracts/_construct.c`,
`shared/sip/transport/_datagrams.c`, `services/edge/proxy/_branches.c`, `shared/_keyed_hmac.c`)
loaded for the tests in both passes.

The compiled pass has them imported already. The pure-Python pass loads each from the
build's file, so its tests compare the C with the interpreted Python. Where no build matches
the source, as in mutmut's copy of the tree, the module is compiled once into `build/c-test/`
by the builder's own `compile_into`.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from deploy.extensions import compile_into, module_of
from shared.extensions import EXT, MANIFEST, ROOT, Build, source_hash


def load(source: str) -> ModuleType:
    """The module of `source` (`shared/sip/_scan.c`): this process's own if it runs the
    compiled build, else loaded from a file built from the source as it is now."""
    name = module_of(source)
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    where = str(binary(source))
    spec = spec_from_file_location(name, where, loader=ExtensionFileLoader(name, where))
    assert spec is not None
    return module_from_spec(spec)


def binary(source: str, root: Path = ROOT) -> Path:
    """The build's file when it was built from `source` as it is, else one compiled now,
    once per version of the source."""
    name = module_of(source)
    digest = source_hash(root / source)
    with contextlib.suppress(OSError, ValueError, KeyError):
        built_file, _, built = Build.from_json((root / MANIFEST).read_text()).modules[name]
        if built == digest and (root / EXT / built_file).is_file():
            return root / EXT / built_file
    target = root / "build" / "c-test" / digest[:16]
    compiled = target / Path(source).with_suffix(EXTENSION_SUFFIXES[0])
    if not compiled.is_file():
        with contextlib.chdir(root):  # the builder names sources from the root
            compile_into(target, [source])
    return compiled


Text = TypeVar("Text", str, bytes)


def mutants(original: Text, inserts: Sequence[Text], rng: random.Random, count: int) -> list[Text]:
    """`original` with one of `inserts` put in, one item dropped, or cut short, at random:
    what the differential tests feed both readers beside the corpus itself."""
    found = []
    for _ in range(count):
        at = rng.randrange(len(original) + 1)
        kind = rng.randrange(3)
        if kind == 0:
            found.append(original[:at] + rng.choice(inserts) + original[at:])
        elif kind == 1:
            found.append(original[:at] + original[at + 1 :])
        else:
            found.append(original[:at])
    return found
