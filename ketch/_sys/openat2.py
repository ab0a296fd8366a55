"""openat2(2): open a path relative to a directory fd with resolution limits.

One syscall, no policy. RESOLVE_IN_ROOT makes the kernel treat `dirfd` as
the root for the whole walk (`..` and absolute symlinks stay inside it).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from enum import IntFlag

_NR = {"x86_64": 437, "aarch64": 437, "riscv64": 437, "ppc64le": 437, "s390x": 437,
       "armv7l": 437, "i686": 437}


class Resolve(IntFlag):
    NO_XDEV = 0x01
    NO_MAGICLINKS = 0x02
    NO_SYMLINKS = 0x04
    BENEATH = 0x08
    IN_ROOT = 0x10
    CACHED = 0x20


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """Return a new fd; OSError(errno, strerror, path) on failure (ENOSYS if unsupported)."""
    nr = _NR.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    how = _OpenHow(flags | os.O_CLOEXEC, mode, int(resolve))
    fd = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(dirfd), os.fsencode(path),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd
