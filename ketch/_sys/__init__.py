"""The syscall layer: ctypes-style bindings to libc (ffi.py), one syscall per function, no policy.

Functions here raise OSError carrying errno and the path they were given;
they never decide anything. Policy lives above and takes this layer as a
parameter so unit tests can pass a recording fake.
"""

from __future__ import annotations

import os

from ketch._sys import ffi

_libc: ffi.Library | None = None


def libc() -> ffi.Library:
    """The C library, loaded once with errno tracking (ffi.py: not ctypes, for speed)."""
    global _libc
    if _libc is None:
        # Not ctypes.util.find_library: it forks `ldconfig -p`, which costs a
        # container start several milliseconds. glibc's soname is stable.
        try:
            _libc = ffi.Library("libc.so.6")
        except OSError:
            from ctypes.util import find_library
            _libc = ffi.Library(find_library("c"))
    return _libc


def check(ret: int, what: str, path: str | None = None) -> int:
    """Turn a -1 return into OSError(errno, strerror, path)."""
    if ret == -1:
        err = ffi.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret
