"""Models built without validation (`shared/contracts/unvalidated.py`): the C construction
(`_construct.c`) against the Python one, and both against the model validated.

Run in both passes: the compiled pass has the C module imported; the pure-Python pass loads
it from the build's file (`tests/shared/sip/accelerators.py`), so each pass compares C with
the Python `_construct` as that pass runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from shared.contracts import unvalidated as module
from shared.contracts.calls import (
    CallAnswered,
    CallEventBatch,
    CallFailed,
    CallStarted,
    DialogLeg,
)
from shared.contracts.unvalidated import _construct, unvalidated
from tests.shared.sip.accelerators import load

SOURCE = "shared/contracts/_construct.c"
Construct = Callable[[type[BaseModel], dict[str, Any]], BaseModel]

LEG = DialogLeg(
    call_id="c1",
    target="sip:alice@10.0.0.5:5070",
    from_header="<sip:1407@edge>;tag=gw",
    to_header="<sip:alice@example.com>;tag=a1",
    routes=("<sip:p1;lr>", "<sip:p2;lr>"),
    address="10.0.0.5:5070",
    transport="udp",
)
STARTED = CallStarted(
    call_id="c1",
    at=1764921600.123,
    edge="edge-1",
    from_tag="a1",
    caller="sip:alice@example.com",
    callee_dialled="14075551234",
    callee="14075551234",
    source="10.0.0.5:5070",
    transport="udp",
    subscriber=None,
    rule="r1407",
    group="0",
    carrier=None,
    peer=None,
    mode=None,
)
ANSWERED = CallAnswered(
    call_id="c1",
    at=1764921601.5,
    edge="edge-1",
    from_tag="a1",
    to_tag="gw",
    target="1",
    target_kind="gateway",
    address="192.0.2.1:5060",
    carrier="acme",
    cseq=1,
    caller_leg=LEG,
    callee_leg=LEG,
    b2bua_leg_call_id=None,
)
FAILED = CallFailed(
    call_id="c2",
    at=1764921602.0,
    edge="edge-1",
    from_tag="b1",
    status=503,
    reason="Service Unavailable",
    origin="edge",
    cause="unavailable",
)
BATCH = CallEventBatch.model_validate(
    {
        "events": [
            {"type": event.routing_key, "schema_version": 1, "data": event.model_dump()}
            for event in (STARTED, FAILED)
        ]
    }
)
MODELS = [LEG, STARTED, ANSWERED, FAILED, BATCH]
"""A model of each shape the edge builds unvalidated: a plain one, events with optional
fields, one holding models (the legs), and the publisher's batch."""


@pytest.fixture(scope="module")
def c_construct() -> Construct:
    construct: Construct = load(SOURCE).construct
    return construct


def fields_of(model: BaseModel) -> dict[str, Any]:
    """Every field of `model`, in its declared order (what the edge passes)."""
    return {name: getattr(model, name) for name in type(model).model_fields}


def assert_same_model(built: BaseModel, validated: BaseModel) -> None:
    """Equal as pydantic compares, dumped and serialised alike, with the same instance slots."""
    assert type(built) is type(validated)
    assert built == validated
    assert built.model_dump() == validated.model_dump()
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_fields_set == set(type(validated).model_fields)
    assert built.__pydantic_extra__ is None
    assert built.__pydantic_private__ is None


@pytest.mark.parametrize("validated", MODELS, ids=lambda model: type(model).__name__)
def test_the_c_construction_builds_the_model_as_python_and_validation_do(
    c_construct: Construct, validated: BaseModel
) -> None:
    by_c = c_construct(type(validated), fields_of(validated))
    by_python = _construct(type(validated), fields_of(validated))
    assert_same_model(by_c, validated)
    assert_same_model(by_python, validated)
    assert by_c == by_python


@pytest.fixture(params=["c", "python"])
def construct(request: pytest.FixtureRequest, c_construct: Construct) -> Construct:
    """Each construction in turn: the C one and the Python one."""
    return c_construct if request.param == "c" else _construct


def test_the_model_takes_the_dict_it_is_given_and_its_class_s_fields_set(
    construct: Construct,
) -> None:
    """Its `__dict__` is the caller's dict itself (the edge builds one per event and keeps
    no reference); its fields set is its class's declared fields, one set per class."""
    fields = fields_of(LEG)
    built = construct(DialogLeg, fields)
    other = construct(DialogLeg, fields_of(LEG))
    assert built.__dict__ is fields
    assert built.model_fields_set == set(DialogLeg.model_fields)
    assert built.model_fields_set is other.model_fields_set
    assert construct(CallFailed, fields_of(FAILED)).model_fields_set == set(CallFailed.model_fields)


def test_a_copy_with_changes_leaves_the_shared_fields_set_alone(construct: Construct) -> None:
    """pydantic copies a model's fields set before it adds the names of an update to it."""
    built = construct(DialogLeg, fields_of(LEG))
    shared = built.model_fields_set
    changed = built.model_copy(update={"call_id": "c9", "extra_name": "x"})
    assert changed.__dict__["call_id"] == "c9"
    assert changed.model_fields_set is not shared
    assert shared == set(DialogLeg.model_fields)
    assert construct(DialogLeg, fields_of(LEG)).model_fields_set == set(DialogLeg.model_fields)


def test_a_model_not_given_every_declared_field_gets_a_set_of_its_own(
    construct: Construct,
) -> None:
    """Fewer or more fields than the class declares, or a class that declares none (no
    pydantic model): the set is of the keys given, and a new one each time."""
    construct(DialogLeg, fields_of(LEG))  # the class's shared set made first
    fewer = {name: value for name, value in fields_of(LEG).items() if name != "routes"}
    short = construct(DialogLeg, fewer)
    assert short.__pydantic_fields_set__ == set(fewer)
    longer = construct(DialogLeg, {**fields_of(LEG), "extra_name": "x"})
    assert longer.__pydantic_fields_set__ == set(DialogLeg.model_fields) | {"extra_name"}
    plain = type("Plain", (), {})
    first, second = construct(plain, {"a": 1}), construct(plain, {"a": 2})
    assert first.__pydantic_fields_set__ == {"a"}
    assert first.__pydantic_fields_set__ is not second.__pydantic_fields_set__


def test_a_subclass_has_a_fields_set_of_its_own(construct: Construct) -> None:
    """Shared by exact class: a subclass's models do not take their parent's set."""

    class Leg(DialogLeg):
        pass

    parent = construct(DialogLeg, fields_of(LEG))
    child = construct(Leg, fields_of(LEG))
    assert child.model_fields_set == set(DialogLeg.model_fields)
    assert child.model_fields_set is not parent.model_fields_set
    assert construct(Leg, fields_of(LEG)).model_fields_set is child.model_fields_set


class BrokenFields(type):
    """A metaclass whose `__pydantic_fields__` raises something other than AttributeError."""

    @property
    def __pydantic_fields__(cls) -> dict[str, object]:
        raise RuntimeError("no fields today")


def test_an_error_reading_the_declared_fields_is_raised_as_getattr_raises_it(
    construct: Construct,
) -> None:
    """Only a class without the attribute is taken for no pydantic model; any other error
    reading it comes out of both constructions alike."""
    broken = BrokenFields("Broken", (), {})
    with pytest.raises(RuntimeError, match="no fields today"):
        construct(broken, {"a": 1})  # type: ignore[arg-type] # a class no pydantic model


def test_a_frozen_model_stays_frozen(c_construct: Construct) -> None:
    """Built past `__setattr__`, the model still refuses assignment afterwards, and hashes
    as the validated one does."""
    built = c_construct(DialogLeg, fields_of(LEG))
    assert hash(built) == hash(LEG)
    with pytest.raises(ValueError, match="frozen"):
        setattr(built, "call_id", "other")  # noqa: B010 (the model is typed as BaseModel)


class OwnNew(BaseModel):
    """A model whose `__new__` is its own: not what `construct` builds."""

    name: str

    def __new__(cls, *args: object, **kwargs: object) -> OwnNew:
        return super().__new__(cls)


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param((), id="no arguments"),
        pytest.param((DialogLeg,), id="one argument"),
        pytest.param((DialogLeg, {}, {}), id="three arguments"),
        pytest.param(("DialogLeg", {}), id="a name, not a type"),
        pytest.param((int, {}), id="a type with its own tp_new"),
        pytest.param((OwnNew, {"name": "x"}), id="a model with its own __new__"),
        pytest.param((DialogLeg, [("call_id", "c1")]), id="fields as pairs"),
        pytest.param((DialogLeg, type("Fields", (dict,), {})()), id="a dict subclass"),
    ],
)
def test_a_wrong_argument_is_a_type_error(
    c_construct: Construct, arguments: tuple[object, ...]
) -> None:
    with pytest.raises(TypeError):
        c_construct(*arguments)  # type: ignore[arg-type]


def test_unvalidated_uses_the_c_construction_exactly_when_the_build_has_it() -> None:
    """The compiled pass builds in C, the pure-Python pass in Python, and `unvalidated`
    builds the same model either way."""
    from shared.extensions import STATE

    in_c = module.C_CONSTRUCT
    assert (in_c is not None) == STATE.startswith("compiled")
    assert module.CONSTRUCT is (_construct if in_c is None else in_c.construct)
    assert_same_model(unvalidated(DialogLeg, **fields_of(LEG)), LEG)


def test_a_type_without_an_instance_dict_is_refused_as_python_refuses_it(
    c_construct: Construct,
) -> None:
    """`object` itself is made by `object.__new__` but holds no `__dict__`: both ways say so."""
    with pytest.raises(AttributeError):
        c_construct(object, {})  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        _construct(object, {})  # type: ignore[arg-type]
