"""The syscall layer: ctypes bindings to libc, one syscall per function, no policy.

Functions here raise OSError carrying errno and the path they were given;
they never decide anything. Policy lives above and takes this layer as a
parameter so unit tests can pass a recording fake.
"""

from __future__ import annotations

import ctypes
import os

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once with errno tracking."""
    global _libc
    if _libc is None:
        # Not ctypes.util.find_library: it forks `ldconfig -p`, which costs a
        # container start several milliseconds. glibc's soname is stable.
        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            from ctypes.util import find_library
            _libc = ctypes.CDLL(find_library("c"), use_errno=True)
    return _libc


def check(ret: int, what: str, path: str | None = None) -> int:
    """Turn a -1 return into OSError(errno, strerror, path)."""
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret
