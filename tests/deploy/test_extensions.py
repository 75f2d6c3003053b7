"""What the compiled build covers, and when it is rebuilt (the compile itself: `make test`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deploy import extensions as builder
from services.edge.proxy.actions import Publish
from services.edge.proxy.call_events import CallNotes
from services.edge.proxy.dialogs import OwnRoute
from services.edge.proxy.forwarding import Branch, Forwarding, Parked
from services.edge.proxy.parked_acks import ParkedAck
from services.edge.proxy.routes import Hop
from services.edge.runtime.trace_ring import TraceEntry
from shared.extensions import EXT, MANIFEST, ROOT, Build, interpreter
from shared.sip.address import Address
from shared.sip.transaction.events import ResponseReceived, Send
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri
from shared.sip.values import CSeq
from shared.sip.via import Via


def test_the_hot_path_is_compiled_but_the_exceptions_services_subclass() -> None:
    names = builder.sources()
    assert {
        "shared/sip/_readers.py",
        "shared/sip/__init__.py",
        "services/edge/proxy/core.py",
    } <= set(names)
    assert "shared/sip/errors.py" not in names
    assert all((ROOT / name).is_file() for name in names)


def test_the_c_modules_are_built_with_them_as_modules_of_their_own() -> None:
    """`_scan.c` becomes `shared.sip._scan` (and `_uri.c` `shared.sip._uri`), recorded in the
    manifest with its hash like a compiled source (an edited one leaves the whole build unused)."""
    assert {"shared/sip/_scan.c", "shared/sip/_uri.c"} <= set(builder.sources())
    assert builder.module_of("shared/sip/_scan.c") == "shared.sip._scan"
    assert builder.module_of("shared/sip/_uri.c") == "shared.sip._uri"
    build = builder.manifest_for(["shared/sip/_scan.c"])
    assert build.modules["shared.sip._scan"][:2] == (
        f"shared/sip/_scan{interpreter()}",
        "shared/sip/_scan.c",
    )


HAND_INITIALISED = (
    SipUri,
    Address,
    Via,
    CSeq,
    Destination,
    Send,
    ResponseReceived,
    Hop,
    OwnRoute,
    Publish,
    Forwarding,
    Branch,
    Parked,
    ParkedAck,
    CallNotes,
    TraceEntry,
)
"""The classes the proxy builds per message (some 90 per call), by hand because compiled, a
dataclass's generated `__init__` still runs as Python (docs/development.md)."""


@pytest.mark.parametrize("kind", HAND_INITIALISED, ids=lambda kind: kind.__name__)
def test_the_classes_built_per_message_have_an_init_of_their_own(kind: type) -> None:
    """`init=False` and a written `__init__`: one the dataclass generated is compiled from
    text (its code's file is ``<string>``), in either build; a compiled written one has no
    Python code at all.  The dataclass's comparison and fields stay."""
    init: object = kind.__init__  # type: ignore[misc]  # the class's own, not an instance's
    assert getattr(getattr(init, "__code__", None), "co_filename", "") != "<string>"
    assert dataclasses.is_dataclass(kind)
    assert not kind.__dataclass_params__.init  # type: ignore[attr-defined]


def test_a_formerly_frozen_class_keeps_its_value_semantics() -> None:
    one = Destination("udp", "192.0.2.1", 5060, pinned=True)
    other = Destination("udp", "192.0.2.1", 5060)
    assert one == other and hash(one) == hash(other)  # `pinned` is not part of the value
    assert one != Destination("udp", "192.0.2.1", 5060, 7)  # the connection is
    assert one != ("udp", "192.0.2.1", 5060)
    assert dataclasses.replace(one, port=5070).port == 5070
    assert {SipUri("a.test", "bob"), SipUri("a.test", "bob")} == {SipUri("a.test", "bob")}


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("shared/sip/__init__.py", "shared.sip"),
        ("shared/sip/uri.py", "shared.sip.uri"),
        ("services/edge/proxy/core.py", "services.edge.proxy.core"),
    ],
)
def test_module_names(source: str, module: str) -> None:
    assert builder.module_of(source) == module


def _built(root: Path, names: list[str]) -> None:
    build = builder.manifest_for(names, root)
    for binary, _, _ in build.modules.values():
        (root / EXT / binary).parent.mkdir(parents=True, exist_ok=True)
        (root / EXT / binary).write_bytes(b"")
    (root / MANIFEST).write_text(build.to_json())


def test_a_build_is_current_until_a_source_changes_or_joins(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    for name in ("a", "b"):
        (tmp_path / "pkg" / f"{name}.py").write_text(f"X = {name!r}\n")
    names = ["pkg/a.py", "pkg/b.py"]
    assert not builder.current(names, tmp_path)
    _built(tmp_path, names)
    assert builder.current(names, tmp_path)
    assert (tmp_path / EXT / "pkg" / f"a{interpreter()}").is_file()
    assert not builder.current([*names, "pkg/c.py"], tmp_path)
    (tmp_path / "pkg" / "b.py").write_text("X = 'edited'\n")
    assert not builder.current(names, tmp_path)


def test_another_mypy_compiles_again(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("X = 1\n")
    _built(tmp_path, ["a.py"])
    assert builder.current(["a.py"], tmp_path)
    old = Build.from_json((tmp_path / MANIFEST).read_text())
    (tmp_path / MANIFEST).write_text(Build(old.interpreter, "0.1", old.modules).to_json())
    assert not builder.current(["a.py"], tmp_path)


def test_nothing_is_built_when_the_variable_says_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLMESH_NO_EXTENSIONS", "1")
    assert builder.build(tmp_path) == 0
    assert "CALLMESH_NO_EXTENSIONS is set" in capsys.readouterr().out
    assert not (tmp_path / "build").exists()
