"""Device rules: parsing, v1 write order, and the v2 eBPF program, run in a tiny interpreter.

The interpreter executes exactly the instruction forms the encoder emits, so
the program's verdicts are checked without loading it into a kernel (the
integration test does that).
"""

from __future__ import annotations

import os
import struct

import pytest

from ketch.errors import InvalidArgument
from ketch.runtime.cgroups import devices, fs, manager_for

DENY_ALL = {"allow": False, "access": "rwm"}
R, W, M = 2, 4, 1  # BPF_DEVCG_ACC_*
CHAR, BLOCK = 2, 1


def run(code: bytes, dev_type: int, major: int, minor: int, access: int) -> int:
    """Execute a device program for one request; returns r0 (1 allow, 0 deny)."""
    ctx = [(access << 16) | dev_type, major, minor]
    reg = [0] * 11
    pc = 0
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    for _step in range(1000):
        op, regs, off, imm = insns[pc]
        dst, src = regs & 0xF, regs >> 4
        pc += 1
        if op == devices.LDX_W:
            reg[dst] = ctx[off // 4]
        elif op == devices.AND32_K:
            reg[dst] = reg[dst] & (imm & 0xFFFFFFFF)
        elif op == devices.RSH32_K:
            reg[dst] = (reg[dst] & 0xFFFFFFFF) >> imm
        elif op == devices.MOV32_X:
            reg[dst] = reg[src] & 0xFFFFFFFF
        elif op == devices.MOV64_K:
            reg[dst] = imm
        elif op == devices.JNE_K:
            pc += off if reg[dst] != imm else 0
        elif op == devices.JEQ_K:
            pc += off if reg[dst] == imm else 0
        elif op == devices.EXIT:
            return reg[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("program did not exit")


def test_parse_defaults_and_errors():
    rules = devices.parse([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "wr"}])
    assert rules[0].is_everything() and not rules[0].allow
    assert rules[1].line() == "c 1:3 rw"
    with pytest.raises(InvalidArgument, match=r"devices\[0\].type"):
        devices.parse([{"allow": True, "type": "x"}])
    with pytest.raises(InvalidArgument, match=r"devices\[0\].access"):
        devices.parse([{"allow": True, "access": "rwx"}])
    with pytest.raises(InvalidArgument, match="allow"):
        devices.parse([{"type": "c"}])


def test_v1_spec_entries_first_in_order_then_defaults(v1tree, writes):
    m = manager_for("c1", "c1", layout=v1tree.layout)
    m.create()
    writes.clear()
    spec = [DENY_ALL,
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "rw"},
            {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "r"}]
    m.set({"devices": spec})
    lines = [(w[0], w[1]) for w in writes if w[0].startswith("devices.")]
    assert lines[:4] == [("devices.deny", "a"), ("devices.allow", "c 10:229 rwm"),
                         ("devices.allow", "b 8:20 rw"), ("devices.allow", "c 1:7 r")]
    defaults = [v for _, v in lines[4:]]
    assert "c 1:3 rwm" in defaults and "c 136:* rwm" in defaults
    assert "c 1:7 rwm" not in defaults  # named by the spec: its verdict stands


def test_v1_allow_all_gets_no_defaults(v1tree, writes):
    m = manager_for("c1", "c1", layout=v1tree.layout)
    m.create()
    writes.clear()
    m.set({"devices": [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 3}]})
    assert [(w[0], w[1]) for w in writes if w[0].startswith("devices.")] == [
        ("devices.allow", "a"), ("devices.deny", "c 1:3 rwm")]
    assert fs.read(m.paths["devices"], "devices.deny") == "c 1:3 rwm"


def test_v1_partial_all_rule_is_split(v1tree, writes):
    m = manager_for("c1", "c1", layout=v1tree.layout)
    m.create()
    writes.clear()
    m.set({"devices": [{"allow": False, "type": "a", "major": 7, "access": "w"}]})
    assert [w[1] for w in writes if w[0] == "devices.deny"] == ["c 7:* w", "b 7:* w"]


def test_program_deny_default_with_exceptions():
    code = devices.program(devices.parse([
        DENY_ALL,
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "r"},
        {"allow": False, "type": "c", "major": 1, "minor": 7},
    ]))
    assert len(code) % 8 == 0
    assert run(code, CHAR, 10, 229, R | W) == 1
    assert run(code, BLOCK, 8, 20, R) == 1
    assert run(code, BLOCK, 8, 20, W) == 0           # only r granted
    assert run(code, BLOCK, 8, 20, R | W) == 0       # partial grant is no grant
    assert run(code, CHAR, 8, 20, R) == 0            # wrong type
    assert run(code, CHAR, 1, 3, R | W) == 1         # /dev/null from the defaults
    assert run(code, CHAR, 136, 5, R | W) == 1       # pts wildcard minor
    assert run(code, CHAR, 1, 7, R) == 0             # /dev/full: the spec denied it
    assert run(code, BLOCK, 259, 0, M) == 1          # mknod of anything
    assert run(code, BLOCK, 259, 0, R) == 0


def test_program_last_match_wins_and_allow_default():
    code = devices.program(devices.parse([
        {"allow": True, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 9, "access": "w"},
    ]))
    assert run(code, CHAR, 1, 9, R) == 1
    assert run(code, CHAR, 1, 9, W) == 0
    assert run(code, CHAR, 1, 9, R | W) == 0         # a deny hits on any bit asked
    assert run(code, BLOCK, 8, 0, R | W) == 1
    code = devices.program(devices.parse([
        DENY_ALL,
        {"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rw"},
        {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "w"},
    ]))
    assert run(code, CHAR, 4, 1, R) == 1
    assert run(code, CHAR, 4, 1, W) == 0


def test_insn_encoding():
    # mov64 r0, 1 ; exit  -- the canonical "allow" tail
    assert devices.insn(devices.MOV64_K, 0, 0, 0, 1) == bytes([0xB7, 0, 0, 0, 1, 0, 0, 0])
    assert devices.insn(devices.EXIT) == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    # ldxw r2, [r1+4]: src in the high nibble
    assert devices.insn(devices.LDX_W, 2, 1, 4) == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])
    # and32 r6, 0xfffffff8 is stored as the signed -8
    assert devices.insn(devices.AND32_K, 6, 0, 0, 0xFFFFFFF8)[4:] == struct.pack("<i", -8)


def test_new_cgroup_starts_deny_all_with_defaults_and_linux_devices(v1tree, writes):
    m = manager_for("c1", "c1", layout=v1tree.layout)
    m.create(devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                      {"path": "/dev/fifo", "type": "p"}])
    lines = [(w[0], w[1]) for w in writes if w[0].startswith("devices.")]
    assert lines[0] == ("devices.deny", "a")
    assert ("devices.allow", "c 1:3 rwm") in lines
    assert lines[-1] == ("devices.allow", "c 10:229 rwm")  # linux.devices stay usable
    writes.clear()
    # set() keeps them allowed after the spec's own rules, also from saved state.
    again = type(m).from_state(m.to_state())
    again.set({"devices": [DENY_ALL, {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]})
    lines = [(w[0], w[1]) for w in writes if w[0].startswith("devices.")]
    assert lines[:2] == [("devices.deny", "a"), ("devices.allow", "b 8:0 r")]
    assert lines[-1] == ("devices.allow", "c 10:229 rwm")


def test_joined_cgroup_keeps_its_device_policy(v1tree, writes):
    leaf = os.path.join(v1tree.layout.mounts["devices"], "shared")
    os.mkdir(leaf)
    manager_for("shared", "x", layout=v1tree.layout).create()
    assert not [w for w in writes if w[0].startswith("devices.") and w[2] == leaf]


def test_v2_create_attaches_the_default_filter(v2tree):
    m = manager_for("c1", "c1", layout=v2tree.layout)
    m.create(devices=[{"type": "c", "major": 10, "minor": 229}])
    (directory, code), = v2tree.filters
    assert directory == m.paths["unified"]
    assert run(code, CHAR, 10, 229, R | W) == 1 and run(code, CHAR, 1, 3, R) == 1
    assert run(code, BLOCK, 8, 0, R) == 0
