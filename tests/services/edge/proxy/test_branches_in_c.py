"""The C branch hash (`_branches.branch_hash`) against the Python one (`_hash_in_python`).

Every edge of a cluster, compiled or not, must write the same branch for the same request
(a retransmission that reaches the other box of a VIP pair leaves with the branch the first
one gave it), so the C must give exactly `hashlib`'s digits, and refuse what Python refuses.
Both passes of the suite run these tests (`tests/shared/sip/accelerators.py` loads the
module in the pure pass).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from types import ModuleType

import pytest

from services.edge.proxy import branches
from services.edge.proxy.branches import _hash_in_python
from tests.shared.sip.accelerators import load

SOURCE = "services/edge/proxy/_branches.c"
Hash = Callable[[Sequence[str]], str]


@pytest.fixture(scope="module")
def module() -> ModuleType:
    return load(SOURCE)


@pytest.fixture(scope="module")
def in_c(module: ModuleType) -> Hash:
    hashed: Hash = module.branch_hash
    return hashed


CASES: list[list[str]] = [
    [],
    [""],
    ["", ""],
    ["abc"],
    ["a", "b", "c"],
    ["INVITE sip:+4930123@gw SIP/2.0", "a73kszlfl", "", "1-2811@192.0.2.7", "1"],
    ["é", "日本", "\U0001f4de", "x\x00y"],  # beyond ASCII; a NUL of its own
    *[["x" * length] for length in (111, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025)],
    ["x" * 63, "y" * 64],  # 128 bytes with the NUL between them: exactly one block
    ["z" * 5000, "w"],  # past the stack buffer: allocated
]


@pytest.mark.parametrize("parts", CASES, ids=range(len(CASES)))
def test_the_c_hash_is_the_python_one(in_c: Hash, parts: list[str]) -> None:
    assert in_c(parts) == in_c(tuple(parts)) == _hash_in_python(parts)


def test_random_parts_hash_the_same_both_ways(in_c: Hash) -> None:
    chance = random.Random(4475)
    alphabet = "abcXYZ019;=.@:<>- \t\x00é日\U0001f4de"
    for _ in range(3000):
        parts = [
            "".join(chance.choice(alphabet) for _ in range(chance.randint(0, 150)))
            for _ in range(chance.randint(0, 8))
        ]
        assert in_c(parts) == _hash_in_python(parts), parts


def test_a_hash_is_sixteen_lower_case_hex_digits(in_c: Hash) -> None:
    digits = in_c(["a@b", "1"])
    assert len(digits) == 16 and set(digits) <= set("0123456789abcdef")
    assert in_c(["a@b", "1"]) != in_c(["a@b1"])  # the NUL keeps the parts apart


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        (["a", 1], TypeError),  # not a str
        ([b"a"], TypeError),
        (["\udcff"], UnicodeEncodeError),  # a lone surrogate: no UTF-8
        (["ok", "x\ud800"], UnicodeEncodeError),
    ],
)
def test_what_python_refuses_the_c_refuses(
    in_c: Hash, parts: list[str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _hash_in_python(parts)
    with pytest.raises(error):
        in_c(parts)


def test_parts_that_are_no_sequence_are_refused(module: ModuleType) -> None:
    with pytest.raises(TypeError, match="list or tuple"):
        module.branch_hash(5)


def test_the_branches_take_the_hash_of_the_build_they_run_in(module: ModuleType) -> None:
    """Compiled, the C one (`load` gives this process's own module); pure, Python's."""
    expected = module.branch_hash if branches._C_HASH is not None else _hash_in_python
    assert branches._hash is expected
