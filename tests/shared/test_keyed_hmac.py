"""`KeyedHmac` is HMAC-SHA256 exactly, whatever the key's length against SHA-256's block, and
so is the C digest beside it (`_keyed_hmac.c`), loaded in both passes of the suite, with each
of its compressions (the CPU's SHA extensions where it has them, and the portable one)."""

from __future__ import annotations

import hashlib
import hmac
import platform
import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from shared import keyed_hmac
from shared.keyed_hmac import KeyedHmac
from tests.shared.sip.accelerators import load

SOURCE = "shared/_keyed_hmac.c"
KEY_LENGTHS = [0, 1, 32, 63, 64, 65, 200]
MESSAGES = [b"", b"call-1@example.com\nudp 192.0.2.1 5060 ", bytes(1000)]


@pytest.fixture(scope="module")
def module() -> ModuleType:
    return load(SOURCE)


def cpu_has_sha_extensions() -> bool:
    """Whether the module should find the SHA extensions: an x86-64 build (64-bit pointers on
    an x86-64 machine) on a CPU whose flags, as Linux reads CPUID, list `sha_ni`.  Where
    `/proc/cpuinfo` cannot tell (not Linux), the test asking is skipped, saying so."""
    if platform.machine() not in ("x86_64", "AMD64") or struct.calcsize("P") != 8:
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo to say whether this CPU has the SHA extensions")
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return "sha_ni" in flags.split()


@pytest.fixture(params=["sha extensions", "portable"])
def compression(request: pytest.FixtureRequest, module: ModuleType) -> Iterator[str]:
    """Each test below runs with each compression the module can use on this machine: where the
    CPU has no SHA extensions, their case is skipped (said so), and never passes untested."""
    try:
        if module.use_sha_extensions(request.param == "sha extensions") != request.param:
            pytest.skip("this CPU has no SHA extensions")
        yield request.param
    finally:
        module.use_sha_extensions(True)  # back to what the import chose


def test_the_module_uses_the_sha_extensions_exactly_where_the_cpu_has_them(
    module: ModuleType,
) -> None:
    has_them = cpu_has_sha_extensions()
    assert module.compression() == ("sha extensions" if has_them else "portable")  # at import
    try:
        assert module.use_sha_extensions(False) == module.compression() == "portable"
        assert module.use_sha_extensions(True) == ("sha extensions" if has_them else "portable")
    finally:
        module.use_sha_extensions(True)


def test_the_benchmark_switch_reports_what_the_digests_run_on() -> None:
    """`keyed_hmac.use_sha_extensions` (`bench.proxy.core_calls --sha-extensions`): hashlib in
    the pure build, whatever is asked; the C module's compression in the compiled one."""
    try:
        if keyed_hmac._C_HMAC is None:
            assert keyed_hmac.use_sha_extensions(False) == "hashlib"
            assert keyed_hmac.sha256_compression() == "hashlib"
        else:
            assert keyed_hmac.use_sha_extensions(False) == "portable"
            assert keyed_hmac.sha256_compression() == "portable"
            expected = "sha extensions" if cpu_has_sha_extensions() else "portable"
            assert keyed_hmac.use_sha_extensions(True) == expected
        assert KeyedHmac(b"k").digest(b"m") == hmac.digest(b"k", b"m", "sha256")
    finally:
        keyed_hmac.use_sha_extensions(True)


def test_a_key_padded_in_c_hashes_the_same_with_either_compression(module: ModuleType) -> None:
    """`hmac_states` compresses too: states keyed by one compression, digests by the other."""
    key = padded(b"record-route key")
    module.use_sha_extensions(False)
    try:
        portable = module.hmac_states(key)
        digest = module.hmac_digest(portable, b"call-1")
    finally:
        module.use_sha_extensions(True)
    assert digest == hmac.digest(b"record-route key", b"call-1", "sha256")
    assert module.hmac_states(key) == portable
    assert module.hmac_digest(portable, b"call-1") == digest


@pytest.mark.parametrize("key_length", KEY_LENGTHS)
def test_a_keyed_hmac_gives_the_standard_digest_again_and_again(key_length: int) -> None:
    key = bytes(i * 7 % 256 for i in range(key_length))
    keyed = KeyedHmac(key)
    for message in MESSAGES:
        assert keyed.digest(message) == hmac.new(key, message, hashlib.sha256).digest()
    assert keyed.digest(b"x") == keyed.digest(b"x")  # its keyed states are copied, not used up


def padded(key: bytes) -> bytes:
    """The key as RFC 2104 pads it to SHA-256's block (a longer one hashed first)."""
    return (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")


def test_the_c_digest_is_the_standard_one_at_every_padding_edge(
    module: ModuleType, compression: str
) -> None:
    """Messages of every length up to three blocks: the padding takes one block or two
    (55 and 56 bytes past a block's start), under keys short, whole and long."""
    for key_length in KEY_LENGTHS:
        key = bytes(range(key_length % 256)) * (key_length // 256 + 1)
        states = module.hmac_states(padded(key[:key_length]))
        for length in range(200):
            message = bytes((n * 31 + length) % 256 for n in range(length))
            expected = hmac.digest(key[:key_length], message, "sha256")
            assert module.hmac_digest(states, message) == expected, (key_length, length)


def test_random_keys_and_messages_digest_the_same_both_ways(
    module: ModuleType, compression: str
) -> None:
    chance = random.Random(2104)
    for _ in range(2000):
        key, message = (
            chance.randbytes(chance.randint(0, 100)),
            chance.randbytes(chance.randint(0, 300)),
        )
        assert module.hmac_digest(module.hmac_states(padded(key)), message) == hmac.digest(
            key, message, "sha256"
        )


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m: m.hmac_states(b"short"), ValueError),
        (lambda m: m.hmac_states("x" * 64), ValueError),
        (lambda m: m.hmac_digest(b"\0" * 63, b"x"), ValueError),
        (lambda m: m.hmac_digest(b"\0" * 64, "text"), TypeError),
        (lambda m: m.hmac_digest(b"\0" * 64), TypeError),
    ],
)
def test_wrong_arguments_are_refused(
    module: ModuleType, call: Callable[[ModuleType], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(module)


def test_a_keyed_hmac_takes_the_digest_of_the_build_it_runs_in(module: ModuleType) -> None:
    """Compiled, the C one (`load` gives this process's own module); pure, hashlib's."""
    if keyed_hmac._C_HMAC is None:
        assert keyed_hmac._C_DIGEST is None
    else:
        assert keyed_hmac._C_DIGEST is module.hmac_digest
