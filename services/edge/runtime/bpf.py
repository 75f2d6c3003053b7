"""The few eBPF calls the edge makes, through ``bpf(2)`` itself: no libbpf, no compiler.

Why by hand: the edge loads one small program (`runtime.steering`) and a map per shared
UDP port; a C toolchain, clang or a BPF library in the image for that would be more
moving parts than the program. Instructions are built by `Insn`'s class methods, named
after the kernel's ``BPF_*`` macros (``include/uapi/linux/bpf.h``), and loaded with the
verifier's log, which goes into the error when it refuses them. Linux x86-64 and arm64
only (the syscall's number); anything else raises `BpfError`, as does a process without
``CAP_BPF``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
from dataclasses import dataclass
from typing import Final

_SYSCALL: Final = {"x86_64": 321, "aarch64": 280}
_MAP_CREATE, _MAP_UPDATE_ELEM, _PROG_LOAD = 0, 2, 5
MAP_REUSEPORT_SOCKARRAY: Final = 20
PROG_SK_REUSEPORT: Final = 21
SO_ATTACH_REUSEPORT_EBPF: Final = 52
SK_PASS: Final = 1
FUNC_SKB_LOAD_BYTES: Final = 26
FUNC_SK_SELECT_REUSEPORT: Final = 82
_ATTR_SIZE: Final = 128
_LOG_SIZE: Final = 1 << 20


class BpfError(OSError):
    """The kernel refused a call (its errno), or there is no ``bpf(2)`` here."""


# Instruction classes, sizes, modes and operations (the kernel's BPF_* values).
LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
_MEM, _IMM_MODE, _LD = 0x60, 0x00, 0x00
_K, _X = 0x00, 0x08
ADD, SUB, MUL, AND, RSH, MOD, XOR, MOV = 0x00, 0x10, 0x20, 0x50, 0x70, 0x90, 0xA0, 0xB0
JA, JEQ, JGT, JGE, JNE, JSLE = 0x00, 0x10, 0x20, 0x30, 0x50, 0xD0
_CALL, _EXIT = 0x80, 0x90
_PSEUDO_MAP_FD: Final = 1


@dataclass(frozen=True, slots=True)
class Insn:
    """One instruction; a jump's target is a label, resolved by `assemble`."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None
    label: str | None = None
    """Set on `Insn.mark`, a pseudo-instruction that names the next one."""

    @classmethod
    def mark(cls, label: str) -> Insn:
        return cls(-1, label=label)

    @classmethod
    def alu64_imm(cls, op: int, dst: int, imm: int) -> Insn:
        return cls(ALU64 | op | _K, dst, imm=imm)

    @classmethod
    def alu64_reg(cls, op: int, dst: int, src: int) -> Insn:
        return cls(ALU64 | op | _X, dst, src)

    @classmethod
    def alu32_imm(cls, op: int, dst: int, imm: int) -> Insn:
        return cls(ALU | op | _K, dst, imm=imm)

    @classmethod
    def alu32_reg(cls, op: int, dst: int, src: int) -> Insn:
        return cls(ALU | op | _X, dst, src)

    @classmethod
    def load(cls, size: int, dst: int, src: int, off: int) -> Insn:
        return cls(LDX | size | _MEM, dst, src, off)

    @classmethod
    def store_imm(cls, size: int, dst: int, off: int, imm: int) -> Insn:
        return cls(ST | size | _MEM, dst, off=off, imm=imm)

    @classmethod
    def store(cls, size: int, dst: int, src: int, off: int) -> Insn:
        return cls(STX | size | _MEM, dst, src, off)

    @classmethod
    def jump_imm(cls, op: int, dst: int, imm: int, target: str, *, wide: bool = True) -> Insn:
        return cls((JMP if wide else JMP32) | op | _K, dst, imm=imm, target=target)

    @classmethod
    def jump_reg(cls, op: int, dst: int, src: int, target: str) -> Insn:
        return cls(JMP | op | _X, dst, src, target=target)

    @classmethod
    def goto(cls, target: str) -> Insn:
        return cls(JMP | JA, target=target)

    @classmethod
    def call(cls, helper: int) -> Insn:
        return cls(JMP | _CALL, imm=helper)

    @classmethod
    def exit(cls) -> Insn:
        return cls(JMP | _EXIT)

    @classmethod
    def wide_imm(cls, dst: int, value: int) -> list[Insn]:
        """``BPF_LD_IMM64``: a 64-bit constant, two instructions."""
        low, high = struct.unpack("<ii", value.to_bytes(8, "little"))
        return [cls(_LD | DW | _IMM_MODE, dst, imm=low), cls(0, imm=high)]

    @classmethod
    def map_fd(cls, dst: int, fd: int) -> list[Insn]:
        """``BPF_LD_MAP_FD``: two instructions (a 64-bit immediate)."""
        return [cls(_LD | DW | _IMM_MODE, dst, _PSEUDO_MAP_FD, imm=fd), cls(0)]


def assemble(program: list[Insn]) -> bytes:
    """The instructions' bytes, each jump's offset counted from the one after it."""
    labels: dict[str, int] = {}
    at = 0
    for insn in program:
        if insn.code < 0:
            if insn.label in labels or insn.label is None:
                raise ValueError(f"label {insn.label!r} twice or empty")
            labels[insn.label] = at
        else:
            at += 1
    out = bytearray()
    at = 0
    for insn in program:
        if insn.code < 0:
            continue
        off = insn.off
        if insn.target is not None:
            off = labels[insn.target] - at - 1  # KeyError: a jump to no label
        out += struct.pack("<BBhi", insn.code, (insn.src << 4) | insn.dst, off, insn.imm)
        at += 1
    return bytes(out)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _bpf(command: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    number = _SYSCALL.get(platform.machine())
    if number is None or not platform.system() == "Linux":
        raise BpfError(0, f"no bpf(2) on {platform.system()} {platform.machine()}")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    result = int(libc.syscall(ctypes.c_long(number), command, attr, len(attr)))
    if result < 0:
        errno = ctypes.get_errno()
        raise BpfError(errno, os.strerror(errno))
    return result


def _attr(layout: str, *values: int | bytes) -> ctypes.Array[ctypes.c_char]:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(layout, attr, 0, *values)
    return attr


def create_sockarray(entries: int) -> int:
    """A ``REUSEPORT_SOCKARRAY`` map of `entries` sockets (u32 keys, u64 fds); its fd."""
    return _bpf(_MAP_CREATE, _attr("<IIII", MAP_REUSEPORT_SOCKARRAY, 4, 8, entries))


def put_socket(map_fd: int, key: int, socket_fd: int) -> None:
    """Put this process's socket `socket_fd` (bound, SO_REUSEPORT) at `key`."""
    key_buffer = ctypes.c_uint32(key)
    value = ctypes.c_uint64(socket_fd)
    attr = _attr(
        "<IIQQQ",
        map_fd,
        0,
        ctypes.addressof(key_buffer),
        ctypes.addressof(value),
        0,  # BPF_ANY
    )
    _bpf(_MAP_UPDATE_ELEM, attr)


def load_reuseport_program(program: list[Insn], name: bytes) -> int:
    """Load an ``SK_REUSEPORT`` program; its fd. A refusal raises `BpfError` with the
    verifier's last lines (read by loading it again with the log on: a log too small for
    a long verification would itself fail the load)."""
    code = assemble(program)
    instructions = ctypes.create_string_buffer(code, len(code))
    license_text = ctypes.create_string_buffer(b"GPL")
    log_buffer = ctypes.create_string_buffer(_LOG_SIZE)

    def load(log_size: int) -> int:
        attr = _attr(
            "<IIQQIIQII16s",
            PROG_SK_REUSEPORT,
            len(code) // 8,
            ctypes.addressof(instructions),
            ctypes.addressof(license_text),
            1 if log_size else 0,
            log_size,
            ctypes.addressof(log_buffer) if log_size else 0,
            0,
            0,
            name[:15],
        )
        return _bpf(_PROG_LOAD, attr)

    try:
        return load(0)
    except BpfError as refused:
        with contextlib.suppress(BpfError):  # loaded with the log on: not the program's fault
            os.close(load(_LOG_SIZE))
        lines = log_buffer.value.decode(errors="replace").strip().splitlines()[-3:]
        raise BpfError(refused.errno, f"{refused.strerror}: {' / '.join(lines)}") from None
