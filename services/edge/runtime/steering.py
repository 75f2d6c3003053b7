"""The kernel gives each datagram on a shared UDP port to the worker owning its Call-ID.

Why: with several workers, `runtime.affinity` hands a datagram the kernel gave the wrong
worker to its call's owner: a second process woken, a copy over a Unix socket (1.5
messages per call with two workers and one sender). Here an ``SK_REUSEPORT`` eBPF program
on each shared port finds the
datagram's ``Call-ID: `` line as `shared.sip.message.peek_call_id` does (a line feed, then
exactly that spelling, before any blank line), hashes its value as `WorkerGroup.owner` does
(CRC-32, modulo the worker count), and picks that worker's socket from a
``REUSEPORT_SOCKARRAY`` map in which every worker puts its own.

The program only saves work; the affinity's check stays the authority. What it does not
read (a compact ``i:``, a Call-ID past the first `MAX_SCAN` bytes, of `MAX_CALL_ID` bytes
or more, with blanks around it, or a datagram the kernel keeps in fragments: the program
reads the part in one piece, all of a loopback datagram up to 1500 bytes) or whose
owner has no socket in the map (a worker restarting) the kernel spreads by its usual hash,
and the worker it reaches hands it on as before. The program never drops a datagram.

On unless ``CALLMESH_EDGE_KERNEL_STEERING=false`` (measured, it saves 3-13 % of the CPU
per call at 1000-3000 cps, and a saturated edge failed fewer calls with it). It needs
``CAP_BPF`` and ``CAP_PERFMON`` (root has both; a container ``cap_add: [BPF, PERFMON]``:
without the second the verifier's Spectre hardening refuses the scan's packet arithmetic)
and Linux 5.8; without them the edge logs one line and hands on.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Final

from services.edge.runtime.bpf import (
    ADD,
    AND,
    DW,
    FUNC_SK_SELECT_REUSEPORT,
    FUNC_SKB_LOAD_BYTES,
    JEQ,
    JGE,
    JGT,
    JNE,
    JSLE,
    MOD,
    MOV,
    MUL,
    RSH,
    SK_PASS,
    SO_ATTACH_REUSEPORT_EBPF,
    SUB,
    XOR,
    B,
    H,
    Insn,
    W,
    create_sockarray,
    load_reuseport_program,
    put_socket,
)

log = logging.getLogger("callmesh.edge")

MAX_SCAN: Final = 1500
"""Bytes of a datagram searched for its Call-ID line (an Ethernet frame's worth)."""
MAX_CALL_ID: Final = 128
"""Bytes read of a Call-ID and its line end: one of this length or more is left to the
hand-on."""
_UDP_HEADER: Final = 8
"""The program's packet data starts at the UDP header."""
_CRC32_POLY: Final = 0xEDB88320
_CALL_ID_NAME: Final = int.from_bytes(b"Call-ID:", "little")

_CTX, _DATA, _END, _AT, _CRC = 6, 7, 8, 9, 7
"""Registers kept: the context, the packet's start and end, where the scan is; the CRC
(in the packet's start's register, unused once the value is copied)."""


def steering_program(map_fd: int, workers: int) -> list[Insn]:
    """The program for one shared port: `map_fd` holds the workers' sockets by index.

    Verifier-shaped: the scan's only back edge is its fall-through, so the verifier walks
    each offset once; the value is copied to the stack before it is hashed, so the hash
    loop starts from the same state wherever the Call-ID was, and is checked once."""
    i = Insn
    buffer = -MAX_CALL_ID
    key = buffer - 8
    return [
        i.alu64_reg(MOV, _CTX, 1),
        i.load(DW, _DATA, _CTX, 0),
        i.load(DW, _END, _CTX, 8),
        i.alu64_imm(MOV, _AT, _UDP_HEADER),
        i.mark("scan"),  # _AT: the next byte to look at
        i.jump_imm(JGT, _AT, _UDP_HEADER + MAX_SCAN, "pass"),
        i.alu64_reg(MOV, 2, _DATA),
        i.alu64_reg(ADD, 2, _AT),
        i.alu64_reg(MOV, 3, 2),
        i.alu64_imm(ADD, 3, 12),  # a line feed, "Call-ID: " and two bytes of value
        i.jump_reg(JGT, 3, _END, "pass"),
        i.load(B, 4, 2, 0),
        i.alu64_imm(ADD, _AT, 1),
        i.jump_imm(JEQ, 4, ord("\n"), "line"),
        i.goto("scan"),
        i.mark("line"),  # a line starts at _AT
        i.load(B, 4, 2, 1),
        i.jump_imm(JEQ, 4, ord("\n"), "pass"),  # a blank line: the header block ended
        i.load(H, 4, 2, 1),
        i.jump_imm(JEQ, 4, int.from_bytes(b"\r\n", "little"), "pass"),
        i.load(DW, 4, 2, 1),
        *i.wide_imm(5, _CALL_ID_NAME),
        i.jump_reg(JNE, 4, 5, "scan"),
        i.load(B, 4, 2, 9),
        i.jump_imm(JNE, 4, ord(" "), "scan"),
        i.alu64_imm(ADD, _AT, 9),  # the value's first byte
        i.load(W, 4, _CTX, 16),  # the packet's length from the UDP header on
        i.alu64_reg(SUB, 4, _AT),
        i.jump_imm(JSLE, 4, 0, "pass"),
        i.jump_imm(JGT, 4, MAX_CALL_ID, "clamp"),
        i.goto("copy"),
        i.mark("clamp"),
        i.alu64_imm(MOV, 4, MAX_CALL_ID),
        i.mark("copy"),  # zeroed first: the hash stops at a zero past a short packet's end
        *(i.store_imm(DW, 10, buffer + 8 * k, 0) for k in range(MAX_CALL_ID // 8)),
        i.alu64_reg(MOV, 1, _CTX),
        i.alu64_reg(MOV, 2, _AT),
        i.alu64_reg(MOV, 3, 10),
        i.alu64_imm(ADD, 3, buffer),
        i.call(FUNC_SKB_LOAD_BYTES),
        i.jump_imm(JNE, 0, 0, "pass"),
        i.load(B, 4, 10, buffer),  # a blank first: the workers strip it, not hashed here
        *_blank_to_pass(4),
        i.alu64_imm(MOV, 2, 0),  # bytes hashed
        i.alu32_imm(MOV, _CRC, -1),
        i.mark("hash"),
        i.jump_imm(JGE, 2, MAX_CALL_ID, "pass"),  # no line end: too long to read
        i.alu64_reg(MOV, 3, 10),
        i.alu64_reg(ADD, 3, 2),
        i.load(B, 4, 3, buffer),
        i.jump_imm(JEQ, 4, ord("\r"), "hashed"),
        i.jump_imm(JEQ, 4, ord("\n"), "hashed"),
        i.jump_imm(JEQ, 4, 0, "pass"),
        i.alu32_reg(XOR, _CRC, 4),
        *_crc_byte(),
        i.alu64_imm(ADD, 2, 1),
        i.goto("hash"),
        i.mark("hashed"),
        i.jump_imm(JEQ, 2, 0, "pass"),  # an empty Call-ID
        i.alu64_reg(MOV, 3, 10),
        i.alu64_reg(ADD, 3, 2),
        i.load(B, 4, 3, buffer - 1),  # its last byte: a blank there is the workers' to strip
        *_blank_to_pass(4),
        i.alu32_imm(XOR, _CRC, -1),
        i.alu32_imm(MOD, _CRC, workers),
        i.store(W, 10, _CRC, key),
        i.alu64_reg(MOV, 1, _CTX),
        *i.map_fd(2, map_fd),
        i.alu64_reg(MOV, 3, 10),
        i.alu64_imm(ADD, 3, key),
        i.alu64_imm(MOV, 4, 0),
        i.call(FUNC_SK_SELECT_REUSEPORT),  # an empty slot: the kernel's own choice
        i.mark("pass"),
        i.alu64_imm(MOV, 0, SK_PASS),
        i.exit(),
    ]


def _blank_to_pass(register: int) -> list[Insn]:
    """Leave the datagram to the kernel's hash if `register` holds a space or a tab."""
    return [
        Insn.jump_imm(JEQ, register, ord(" "), "pass"),
        Insn.jump_imm(JEQ, register, ord("\t"), "pass"),
    ]


def _crc_byte() -> list[Insn]:
    """Eight rounds of the reflected CRC-32 (zlib's) over the byte already XORed in."""
    i = Insn
    rounds: list[Insn] = []
    for _ in range(8):
        rounds += [
            i.alu32_reg(MOV, 5, _CRC),
            i.alu32_imm(AND, 5, 1),
            i.alu32_imm(MUL, 5, _CRC32_POLY - (1 << 32)),  # not AND with -bit: it forks
            i.alu32_imm(RSH, _CRC, 1),
            i.alu32_reg(XOR, _CRC, 5),
        ]
    return rounds


def create_maps(workers: int, ports: int) -> tuple[int, ...]:
    """One socket map per shared UDP port, made by the pool before its workers start (they
    inherit the fds); empty, with one log line, where the kernel refuses."""
    maps: list[int] = []
    try:
        for _ in range(ports):
            maps.append(create_sockarray(workers))
    except OSError as error:  # BpfError, or no libc to call bpf(2) through
        for fd in maps:
            os.close(fd)
        log.warning(
            "edge: no kernel steering (%s): messages reach their call's worker by hand-on",
            error,
        )
        return ()
    return tuple(maps)


def join(maps: tuple[int, ...], index: int, workers: int, sockets: list[socket.socket]) -> None:
    """Put worker `index`'s shared UDP sockets (one per map, in order) in the maps; worker 0
    also attaches the program to each port (the kernel runs it for the whole port). No maps
    (steering off, or refused: the pool said so once) is no steering, silently."""
    if not maps:
        return
    if len(maps) != len(sockets):
        log.warning(
            "edge: %d steering maps for %d shared UDP ports: handed on", len(maps), len(sockets)
        )
        return
    for map_fd, sock in zip(maps, sockets, strict=True):
        try:
            put_socket(map_fd, index, sock.fileno())
            if index == 0:
                program = load_reuseport_program(steering_program(map_fd, workers), b"cm_steer")
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, program)
                finally:
                    os.close(program)  # the port holds it
        except OSError as error:  # BpfError too
            log.warning(
                "edge: no kernel steering on %s for worker %d (%s): its messages are handed on",
                sock.getsockname(),
                index,
                error,
            )
