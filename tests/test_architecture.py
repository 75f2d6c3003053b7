"""The package boundaries, checked on every module's imports (read with `ast`, nothing imported).

- A service imports `shared` and its own modules, never another service: what
  two services need lives in `shared/` with one owner.  Only the all-in-one
  entry point (`services/__main__.py`, `services/__init__.py`) assembles them.
- `shared` is a library: it imports no service.
- The I/O-free layers (the SIP core, the routing table's index and records, RFC 3263's
  selection and cache (`shared/dns` but its resolver),
  and the edge's core: the proxy, its policies and the caches it reads; all of
  the edge but `runtime/`, `feeds/` and `api/`) import no asyncio, no sockets,
  no bus and no store, so they stay sans-IO: testable without a network and
  fit for mypyc.
- One name per class across `shared` and `services`: two classes sharing a
  name are two concepts a reader (and an import) can confuse.
- No module of `shared` or `services` passes 400 lines: one job per module;
  what is over is listed, with the reason, until it is split.
- No module of `shared` or `services` calls `asyncio.wait_for`: on Python 3.11 it returns
  instead of raising when a cancel lands as what it waits for finishes, and a loop whose
  stop's cancel was lost went on for good (the AMQP bus's `close`, the edge's Redis loops).
  `asyncio.timeout` counts cancels; it is the one way to bound a wait.
- No compiled (`deploy.extensions.sources`) coroutine awaits inside an `except` block: a mypyc
  coroutine suspended there left its exception as the one being handled for the rest of
  the loop (`sys.exc_info()`, the context of every exception raised meanwhile).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from deploy.extensions import sources

ROOT = Path(__file__).resolve().parent.parent

ASSEMBLERS = frozenset({Path("services/__main__.py"), Path("services/__init__.py")})
"""The all-in-one process: the one place that may import every service."""

EDGE_CORE = tuple(
    Path("services/edge", name)
    for name in (
        "proxy",
        "policy",
        "protection",
        "topology",
        "hooks",
        "location",
        "destinations",
        "keepalive",
        "b2bua",
        "control",
    )
)
"""The edge's sans-IO side; its I/O is `runtime/` (sockets, driver, start-up) and `feeds/`."""
IO_FREE = (Path("shared/sip"), Path("shared/routing_table"), Path("shared/dns"), *EDGE_CORE)
IO_ALLOWED = (
    Path("shared/sip/transport"),
    Path("shared/dns/resolver.py"),
    Path("shared/routing_table/store.py"),
    Path("shared/routing_table/cache/cache.py"),
)
"""Inside the I/O-free layers, the adapters that do the I/O (transports, the table's store and
the edge's cache that follows the bus; its lookups, `cache/route.py`, stay I/O-free)."""

MAX_LINES = 400
LONG_MODULES: dict[Path, str] = {}
"""Modules allowed past `MAX_LINES`, each with the reason (none at present)."""

SHARED_CLASS_NAMES: dict[str, str] = {}
"""Class names allowed in more than one module, each with the reason (none at present)."""

IO_MODULES = frozenset(
    {"asyncio", "socket", "selectors", "ssl", "redis", "aio_pika", "aiormq", "shared.bus"}
    | {"shared.store", "shared.runner", "shared.background", "dns", "shared.dns.resolver"}
)


def imports_of(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, modules named) of every import statement, lazy ones inside functions included."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from services import edge` names a package: each name may be a module
            yield node.lineno, [node.module] + [f"{node.module}.{a.name}" for a in node.names]


def modules_under(root: Path, *folders: str) -> list[Path]:
    return sorted(p.relative_to(root) for folder in folders for p in (root / folder).rglob("*.py"))


def within(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def is_module(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def class_name_clashes(root: Path) -> dict[str, list[str]]:
    """Class name → the modules defining it, for every name defined in more than one place."""
    defined: dict[str, list[str]] = {}
    for path in modules_under(root, "services", "shared"):
        tree = ast.parse((root / path).read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, []).append(str(path))
    return {name: paths for name, paths in defined.items() if len(paths) > 1}


def long_modules(root: Path) -> dict[Path, int]:
    """Module → its line count, for every module of `shared` and `services` past `MAX_LINES`."""
    counts = {
        path: len((root / path).read_text().splitlines())
        for path in modules_under(root, "services", "shared")
    }
    return {path: count for path, count in counts.items() if count > MAX_LINES}


def cross_service_imports(root: Path) -> list[str]:
    """`services.X` importing `services.Y` (X ≠ Y), or `shared` importing any service."""
    found = []
    for path in modules_under(root, "services", "shared"):
        if path in ASSEMBLERS:
            continue
        owner = path.parts[1] if path.parts[0] == "services" else None
        for line, names in imports_of(root / path):
            foreign = [
                n for n in names if is_module(n, "services") and n.split(".")[1:2] != [owner]
            ]
            if foreign and foreign[0] != "services":
                found.append(f"{path}:{line} imports {foreign[0]}")
    return found


def io_imports(root: Path) -> list[str]:
    """Imports of asyncio, sockets, the bus or the store from the I/O-free layers."""
    found = []
    for path in modules_under(root, "services", "shared"):
        if not within(path, IO_FREE) or within(path, IO_ALLOWED):
            continue
        for line, names in imports_of(root / path):
            io = [n for n in names if any(is_module(n, m) for m in IO_MODULES)]
            if io:
                found.append(f"{path}:{line} imports {io[0]}")
    return found


def test_no_service_imports_another_service_and_shared_imports_none() -> None:
    assert len(modules_under(ROOT, "services", "shared")) > 100  # the walk sees the tree
    assert cross_service_imports(ROOT) == []


def test_the_io_free_layers_import_no_asyncio_socket_bus_or_store() -> None:
    checked = [p for p in modules_under(ROOT, *map(str, IO_FREE)) if not within(p, IO_ALLOWED)]
    for module in (
        "shared/routing_table/index.py",
        "shared/routing_table/cache/route.py",
        "services/edge/proxy/__init__.py",
        "services/edge/policy/overload.py",
        "services/edge/destinations/selector.py",
        "services/edge/location/directory.py",
    ):
        assert Path(module) in checked
    assert Path("shared/sip/message.py") in checked
    assert io_imports(ROOT) == []


def test_every_edge_module_is_on_the_core_or_the_io_side() -> None:
    """No loose modules at the edge's root beyond its entry points and its one metrics module,
    and every folder named as core (sans-IO, checked above) or I/O."""
    edge = ROOT / "services/edge"
    assert sorted(p.name for p in edge.glob("*.py")) == [
        "__init__.py",
        "__main__.py",
        "metrics.py",
        "service.py",
    ]
    io_side = {"runtime", "feeds", "api"}
    folders = {p.name for p in edge.iterdir() if (p / "__init__.py").exists()}
    assert folders == io_side | {path.name for path in EDGE_CORE}


def test_the_checks_find_what_they_forbid(tmp_path: Path) -> None:
    """Positive control on a planted tree: each forbidden import is reported, allowed ones not."""
    files = {
        "services/__main__.py": "from services.edge import service\n",
        "services/edge/ok.py": "from services.edge import metrics\nfrom shared.bus import Bus\n",
        "services/edge/bad.py": "import json\nfrom services.routing import writer\n",
        "shared/lib.py": "from services.registrar.handler import RegisterHandler\n",
        "shared/sip/core.py": "import asyncio\nfrom shared.bus import Bus\nimport re\n",
        "shared/sip/transport/udp.py": "import asyncio\nimport socket\n",
        "services/edge/proxy/core.py": "def lazy():\n    from shared.store import Store\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cross_service_imports(tmp_path) == [
        "services/edge/bad.py:2 imports services.routing",
        "shared/lib.py:1 imports services.registrar.handler",
    ]
    assert io_imports(tmp_path) == [
        "services/edge/proxy/core.py:2 imports shared.store",
        "shared/sip/core.py:1 imports asyncio",
        "shared/sip/core.py:2 imports shared.bus",
    ]


def test_no_two_classes_share_a_name() -> None:
    clashes = class_name_clashes(ROOT)
    assert sorted(clashes) == sorted(SHARED_CLASS_NAMES), clashes


def test_no_module_passes_the_line_limit() -> None:
    assert len(modules_under(ROOT, "services", "shared")) > 100  # the walk sees the tree
    assert sorted(long_modules(ROOT)) == sorted(LONG_MODULES), long_modules(ROOT)


def test_the_size_and_name_checks_find_what_they_forbid(tmp_path: Path) -> None:
    """Positive control on a planted tree: a repeated class name, nested or not, and a long
    module are reported; one name per class and a module at the limit are not."""
    files = {
        "shared/a.py": "class Hop:\n    pass\n\n\nclass Only:\n    pass\n",
        "services/edge/b.py": "def f() -> None:\n    class Hop:\n        pass\n",
        "services/edge/long.py": "x = 1\n" * (MAX_LINES + 1),
        "shared/limit.py": "x = 1\n" * MAX_LINES,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert class_name_clashes(tmp_path) == {"Hop": ["services/edge/b.py", "shared/a.py"]}
    assert long_modules(tmp_path) == {Path("services/edge/long.py"): MAX_LINES + 1}


def wait_for_calls(root: Path) -> list[str]:
    """``path:line`` of each ``asyncio.wait_for(...)`` call under `shared` and `services`."""
    found = []
    for path in modules_under(root, "services", "shared"):
        for node in ast.walk(ast.parse((root / path).read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "wait_for"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "asyncio"
            ):
                found.append(f"{path}:{node.lineno}")
    return found


def test_no_wait_is_bounded_by_wait_for() -> None:
    assert wait_for_calls(ROOT) == []


def test_the_wait_for_check_finds_a_call(tmp_path: Path) -> None:
    """Positive control: the call is found; a condition's own ``wait_for`` method is not."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared/a.py").write_text(
        "import asyncio\n\n\nasync def f(c: asyncio.Condition) -> None:\n"
        "    await c.wait_for(lambda: True)\n    await asyncio.wait_for(c.wait(), 1)\n"
    )
    (tmp_path / "services").mkdir()
    assert wait_for_calls(tmp_path) == ["shared/a.py:6"]


def awaits_in_except_blocks(root: Path, modules: list[Path]) -> list[str]:
    """``path:line`` of each ``await`` (or ``async with``/``for``) inside an ``except`` block
    of a coroutine of `modules`."""
    found = []
    for path in modules:
        for function in ast.walk(ast.parse((root / path).read_text())):
            if not isinstance(function, ast.AsyncFunctionDef):
                continue
            for handler in ast.walk(function):
                if isinstance(handler, ast.ExceptHandler):
                    found += [
                        f"{path}:{node.lineno}"
                        for node in ast.walk(handler)
                        if isinstance(node, (ast.Await, ast.AsyncWith, ast.AsyncFor))
                    ]
    return found


def test_no_compiled_coroutine_awaits_inside_an_except_block() -> None:
    compiled = [Path(source) for source in sources(ROOT) if source.endswith(".py")]
    assert len(compiled) > 50  # the build's list sees the tree
    assert awaits_in_except_blocks(ROOT, compiled) == []


def test_the_except_block_check_finds_an_await(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "import asyncio\n\n\nasync def f() -> None:\n    try:\n        pass\n"
        "    except OSError:\n        await asyncio.sleep(1)\n    await asyncio.sleep(0)\n"
    )
    assert awaits_in_except_blocks(tmp_path, [Path("a.py")]) == ["a.py:8"]
