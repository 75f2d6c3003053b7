"""The eBPF calls by hand: instructions' bytes, and the kernel's refusals as errors."""

from __future__ import annotations

import errno
import struct

import pytest

from services.edge.runtime.bpf import (
    ADD,
    JEQ,
    MOV,
    SK_PASS,
    BpfError,
    Insn,
    assemble,
    create_sockarray,
    load_reuseport_program,
)


def test_a_jump_counts_from_the_instruction_after_it() -> None:
    program = [
        Insn.alu64_imm(MOV, 0, SK_PASS),
        Insn.jump_imm(JEQ, 0, 1, "end"),
        Insn.alu64_imm(ADD, 0, 1),
        *Insn.wide_imm(2, 0x1122334455667788),
        Insn.mark("end"),
        Insn.exit(),
    ]
    code = assemble(program)
    assert len(code) == 6 * 8
    jump = struct.unpack_from("<BBhi", code, 8)
    assert jump == (0x05 | 0x10, 0, 3, 1)  # over the add and the two halves of the constant
    low, high = struct.unpack_from("<i", code, 28)[0], struct.unpack_from("<i", code, 36)[0]
    assert (high << 32) | (low & 0xFFFFFFFF) == 0x1122334455667788


def test_a_label_twice_or_a_jump_to_none_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        assemble([Insn.mark("a"), Insn.mark("a"), Insn.exit()])
    with pytest.raises(KeyError):
        assemble([Insn.goto("nowhere"), Insn.exit()])


def test_a_program_the_verifier_refuses_says_why() -> None:
    """Reading a register never written: the verifier's own words in the error."""
    with pytest.raises(BpfError, match="R5 !read_ok"):
        load_reuseport_program([Insn.alu64_reg(MOV, 0, 5), Insn.exit()], b"bad")


def test_a_program_that_runs_off_its_end_is_refused() -> None:
    with pytest.raises(BpfError) as refused:
        load_reuseport_program([Insn.alu64_imm(MOV, 0, SK_PASS)], b"no_exit")
    assert refused.value.errno == errno.EINVAL  # the verifier's, not a missing capability's


def test_a_map_of_no_sockets_is_refused() -> None:
    with pytest.raises(BpfError) as refused:
        create_sockarray(0)
    assert refused.value.errno == errno.EINVAL
