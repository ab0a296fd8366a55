"""The two ways a BPF program enters the kernel, without policy:

* bpf(2): load an eBPF program, attach/detach/query it on a cgroup (the v2
  device filter). The attr unions are packed by hand at the offsets of
  linux/bpf.h; only the fields these commands use are set, the rest stay
  zero as the kernel requires.
* seccomp(2) SECCOMP_SET_MODE_FILTER: install a classic-BPF syscall filter
  (struct sock_filter array, as libseccomp exports it).
"""

from __future__ import annotations

import os
import struct

from ketch._sys import ffi, libc

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}
SECCOMP_SET_MODE_FILTER = 1
_ATTR_SIZE = 128


_syscall_long = None


def _syscall(*args) -> int:
    """syscall(2) with its long result (libc's shared `syscall` keeps its int one)."""
    global _syscall_long
    if _syscall_long is None:
        _syscall_long = ffi._LibcFunc(("syscall", libc()))
        _syscall_long.restype = ffi.c_long
    return _syscall_long(*args)


def _bpf(cmd: int, attr, what: str) -> int:
    nr = _NR_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"{what}: bpf(2) number unknown on {os.uname().machine}")
    ret = _syscall(ffi.c_long(nr), ffi.c_int(cmd), attr, ffi.c_uint(_ATTR_SIZE))
    if ret < 0:
        err = ffi.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def prog_load(prog_type: int, insns: bytes, license: str = "Apache", log_size: int = 0,
              expected_attach_type: int = 0) -> int:
    """Load a program; returns its fd. With log_size the verifier log is put in the error."""
    code = ffi.create_string_buffer(insns, len(insns))
    lic = ffi.create_string_buffer(license.encode())
    log = ffi.create_string_buffer(log_size) if log_size else None
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIQQIIQ", attr, 0, prog_type, len(insns) // 8,
                     ffi.addressof(code), ffi.addressof(lic),
                     1 if log else 0, log_size, ffi.addressof(log) if log else 0)
    struct.pack_into("=I", attr, 68, expected_attach_type)
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")
    except OSError as exc:
        if log is not None and log.value:
            raise OSError(exc.errno, f"{exc.strerror}; verifier: {log.value.decode()[-300:]}") from exc
        raise


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIII", attr, 0, target_fd, prog_fd, attach_type, flags)
    _bpf(BPF_PROG_ATTACH, attr, "bpf(BPF_PROG_ATTACH)")


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=III", attr, 0, target_fd, prog_fd, attach_type)
    _bpf(BPF_PROG_DETACH, attr, "bpf(BPF_PROG_DETACH)")


def prog_query(target_fd: int, attach_type: int, max_progs: int = 64) -> list[int]:
    """Ids of the programs attached to a cgroup for `attach_type`."""
    ids = (ffi.c_uint32 * max_progs)()
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIIIQI", attr, 0, target_fd, attach_type, 0, 0,
                     ffi.addressof(ids), max_progs)
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    count = struct.unpack_from("=I", attr, 24)[0]
    return list(ids[:count])


def prog_get_fd_by_id(prog_id: int) -> int:
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr, "bpf(BPF_PROG_GET_FD_BY_ID)")


class _SockFprog(ffi.Structure):
    _fields_ = [("len", ffi.c_ushort), ("filter", ffi.c_void_p)]


def seccomp_set_filter(program: bytes, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, {len, program}) on the calling thread."""
    nr = _NR_SECCOMP.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"seccomp: syscall number unknown on {os.uname().machine}")
    code = ffi.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ffi.addressof(code))
    ret = _syscall(ffi.c_long(nr), ffi.c_uint(SECCOMP_SET_MODE_FILTER), ffi.c_uint(flags),
                   ffi.byref(prog))
    if ret < 0:
        err = ffi.get_errno()
        raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(err)}")
    if ret > 0:  # TSYNC: the id of a thread that could not be synchronised
        raise OSError(3, f"seccomp(SECCOMP_SET_MODE_FILTER): thread {ret} cannot take the filter")
