"""The device cgroup: runtime-spec linux.resources.devices on v1 and v2.

Rules are applied in spec order and the last matching rule wins, as the
runtime-spec requires. When the rules end up denying by default, the devices
every container gets anyway (runtime-spec "default devices": null, zero,
full, random, urandom, tty, console, ptmx, pts/*, plus mknod of anything)
and the nodes of linux.devices are allowed AFTER the spec's rules, so
`devices.list` starts with the spec's own entries in their order (runc puts
its defaults elsewhere and reorders, which is why it fails the conformance
test for `c 10:229 rwm`). A new cgroup starts from deny-all plus those
(runc's default too), so a config without device rules gets no host device.

v1: each rule is one write to devices.allow or devices.deny.
v2: there are no device files; a BPF_PROG_TYPE_CGROUP_DEVICE program that
encodes the same rules is loaded and attached to the cgroup directory. The
instruction encoder below emits it directly (eight bytes per instruction).
"""

from __future__ import annotations

import errno
import os

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.runtime.cgroups import fs

WILDCARD = -1


class Rule:
    __slots__ = ("allow", "type", "major", "minor", "access")

    def __init__(self, allow: bool, type: str = "a", major: int = WILDCARD,  # noqa: A002
                 minor: int = WILDCARD, access: str = "rwm"):
        self.allow = allow
        self.type = type        # a (all), c (char), b (block)
        self.major = major
        self.minor = minor
        self.access = access

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return f"Rule({'allow' if self.allow else 'deny'} {self.line()})"

    def line(self) -> str:
        """The v1 devices.allow/deny syntax: 'c 1:3 rwm'."""
        star = lambda n: "*" if n == WILDCARD else str(n)  # noqa: E731
        return f"{self.type} {star(self.major)}:{star(self.minor)} {self.access}"

    def is_everything(self) -> bool:
        return self.type == "a" and self.major == WILDCARD and self.minor == WILDCARD \
            and set(self.access) == set("rwm")


DEFAULT_ALLOWED = [
    Rule(True, "c", WILDCARD, WILDCARD, "m"),
    Rule(True, "b", WILDCARD, WILDCARD, "m"),
    Rule(True, "c", 1, 3, "rwm"),     # /dev/null
    Rule(True, "c", 1, 5, "rwm"),     # /dev/zero
    Rule(True, "c", 1, 7, "rwm"),     # /dev/full
    Rule(True, "c", 1, 8, "rwm"),     # /dev/random
    Rule(True, "c", 1, 9, "rwm"),     # /dev/urandom
    Rule(True, "c", 5, 0, "rwm"),     # /dev/tty
    Rule(True, "c", 5, 1, "rwm"),     # /dev/console
    Rule(True, "c", 5, 2, "rwm"),     # /dev/ptmx
    Rule(True, "c", 136, WILDCARD, "rwm"),  # /dev/pts/*
]


def parse(devices: list, field: str = "linux.resources.devices") -> list[Rule]:
    """Rules from runtime-spec entries; bad entries -> InvalidArgument naming them."""
    if not isinstance(devices, list):
        raise InvalidArgument(f"{field}: must be a list")
    rules = []
    for i, d in enumerate(devices):
        where = f"{field}[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("allow"), bool):
            raise InvalidArgument(f"{where}: needs a boolean 'allow'")
        kind = d.get("type") or "a"
        if kind not in ("a", "b", "c"):
            raise InvalidArgument(f"{where}.type: {kind!r} is not a, b or c")
        access = d.get("access") or "rwm"
        if not isinstance(access, str) or set(access) - set("rwm"):
            raise InvalidArgument(f"{where}.access: {access!r} is not made of r, w, m")
        nums = []
        for key in ("major", "minor"):
            v = d.get(key)
            if v is None or v == WILDCARD:
                nums.append(WILDCARD)
            elif isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidArgument(f"{where}.{key}: {v!r} is not a device number")
            else:
                nums.append(v)
        access = "".join(c for c in "rwm" if c in access)
        rules.append(Rule(d["allow"], kind, nums[0], nums[1], access))
    return rules


def from_linux_devices(devices: list | None) -> list[Rule]:
    """Allow rules for the nodes linux.devices creates (runc allows them too).

    'u' (unbuffered char) is a char device to the cgroup; fifos ('p') are not
    checked by the device cgroup at all.
    """
    out = []
    for d in devices or []:
        if not isinstance(d, dict) or d.get("type") not in ("c", "b", "u"):
            continue
        major, minor = d.get("major"), d.get("minor")
        if isinstance(major, int) and isinstance(minor, int):
            out.append(Rule(True, "b" if d["type"] == "b" else "c", major, minor, "rwm"))
    return out


def effective(rules: list[Rule], extra: list[Rule] = ()) -> list[Rule]:
    """The rules to apply: when they deny by default, the default devices and
    `extra` (linux.devices) are allowed after them."""
    default_allow = True
    for r in rules:
        if r.is_everything():
            default_allow = r.allow
    if default_allow:
        return list(rules)
    # A device the spec names itself keeps the spec's verdict.
    named = {(r.type, r.major, r.minor) for r in rules}
    return list(rules) + [d for d in [*DEFAULT_ALLOWED, *extra]
                          if (d.type, d.major, d.minor) not in named]


DENY_ALL = [Rule(False)]


def apply_v1(directory: str, rules: list[Rule], extra: list[Rule] = ()) -> None:
    for r in effective(rules, extra):
        name = "devices.allow" if r.allow else "devices.deny"
        if r.type == "a" and not r.is_everything():
            # The kernel reads any 'a' line as "everything": split it instead.
            for kind in ("c", "b"):
                fs.write(directory, name, Rule(r.allow, kind, r.major, r.minor, r.access).line(),
                         "linux.resources.devices")
        else:
            fs.write(directory, name, "a" if r.is_everything() else r.line(),
                     "linux.resources.devices")


# --- v2: the eBPF device filter -------------------------------------------------

_DEV_TYPE = {"b": 1, "c": 2}              # BPF_DEVCG_DEV_BLOCK / _CHAR
_ACC = {"m": 1, "r": 2, "w": 4}           # BPF_DEVCG_ACC_MKNOD / _READ / _WRITE

# opcodes: class | op | source
LDX_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W
AND32_K = 0x54    # BPF_ALU | BPF_AND | BPF_K
RSH32_K = 0x74    # BPF_ALU | BPF_RSH | BPF_K
MOV32_X = 0xBC    # BPF_ALU | BPF_MOV | BPF_X
MOV64_K = 0xB7    # BPF_ALU64 | BPF_MOV | BPF_K
JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
JNE_K = 0x55      # BPF_JMP | BPF_JNE | BPF_K
EXIT = 0x95       # BPF_JMP | BPF_EXIT


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn: u8 code, u8 dst:4|src:4, s16 off, s32 imm."""
    import struct  # only the v2 filter needs it

    if imm > 0x7FFFFFFF:
        imm -= 1 << 32
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(r: Rule) -> list[bytes]:
    """Instructions that return the rule's verdict if it matches, else fall through."""
    body: list[tuple] = []     # (code, dst, src, off, imm, jumps_to_next)
    if r.type != "a":
        body.append((JNE_K, 2, 0, 0, _DEV_TYPE[r.type], True))
    mask = sum(_ACC[c] for c in r.access)
    if mask != 7:
        body.append((MOV32_X, 6, 3, 0, 0, False))
        if r.allow:   # an allow rule covers the request only if it grants every bit asked
            body += [(AND32_K, 6, 0, 0, ~mask & 0xFFFFFFFF, False), (JNE_K, 6, 0, 0, 0, True)]
        else:         # a deny rule hits if it names any bit asked
            body += [(AND32_K, 6, 0, 0, mask, False), (JEQ_K, 6, 0, 0, 0, True)]
    if r.major != WILDCARD:
        body.append((JNE_K, 4, 0, 0, r.major, True))
    if r.minor != WILDCARD:
        body.append((JNE_K, 5, 0, 0, r.minor, True))
    body += [(MOV64_K, 0, 0, 0, int(r.allow), False), (EXIT, 0, 0, 0, 0, False)]
    out = []
    for i, (code, dst, src, off, imm, to_next) in enumerate(body):
        out.append(insn(code, dst, src, len(body) - i - 1 if to_next else off, imm))
    return out


def program(rules: list[Rule], extra: list[Rule] = ()) -> bytes:
    """The device filter for `rules` (last match wins, so they are tested in reverse)."""
    rules = effective(rules, extra)
    default_allow = True
    start = 0
    for i, r in enumerate(rules):
        if r.is_everything():
            default_allow, start = r.allow, i + 1
    code = [
        insn(LDX_W, 2, 1, 0),          # r2 = ctx->access_type
        insn(AND32_K, 2, 0, 0, 0xFFFF),  # r2 = device type
        insn(LDX_W, 3, 1, 0),          # r3 = ctx->access_type
        insn(RSH32_K, 3, 0, 0, 16),    # r3 = access bits
        insn(LDX_W, 4, 1, 4),          # r4 = ctx->major
        insn(LDX_W, 5, 1, 8),          # r5 = ctx->minor
    ]
    for r in reversed(rules[start:]):
        code += _rule_block(r)
    code += [insn(MOV64_K, 0, 0, 0, int(default_allow)), insn(EXIT)]
    return b"".join(code)


def apply_v2(directory: str, rules: list[Rule], extra: list[Rule] = ()) -> None:
    """Load the filter, attach it to the cgroup, then detach the ones it replaces."""
    from ketch._sys import bpf

    code = program(rules, extra)
    try:
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise FailedPrecondition(f"device filter: open cgroup {directory}: {exc.strerror}") from exc
    try:
        try:
            old = bpf.prog_query(dirfd, bpf.BPF_CGROUP_DEVICE)
        except OSError:
            old = []
        try:
            prog = bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, code, log_size=1 << 16)
        except OSError as exc:
            hint = " (needs CAP_SYS_ADMIN and CONFIG_CGROUP_BPF)" if exc.errno in (errno.EPERM, errno.EINVAL) else ""
            raise FailedPrecondition(f"device filter: load eBPF program: {exc.strerror}{hint}") from exc
        try:
            bpf.prog_attach(dirfd, prog, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
        except OSError as exc:
            raise FailedPrecondition(f"device filter: attach to {directory}: {exc.strerror}") from exc
        finally:
            os.close(prog)
        for prog_id in old:
            try:
                fd = bpf.prog_get_fd_by_id(prog_id)
            except OSError:
                continue
            try:
                bpf.prog_detach(dirfd, fd, bpf.BPF_CGROUP_DEVICE)
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        os.close(dirfd)
