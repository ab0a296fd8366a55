"""The part of ctypes the syscall layer uses, built on `_ctypes` alone.

`import ctypes` costs a container start about 10 ms of CPU per process on a
loaded 2-core host (its __init__ defines every C type, checks their sizes
through struct, and loads ctypes._endian), and `ketch-runc run` pays it in
two processes. Everything the runtime's syscalls need (int types, structures,
byref, errno, calling a libc function) lives in the `_ctypes` extension
itself; this module names those few pieces, with ctypes' spelling, so the
binding code reads the same. Code off the start path (openat2) may keep
using ctypes proper: the two interoperate, they are the same C types.
"""

from __future__ import annotations

import _ctypes
import os

Structure = _ctypes.Structure
byref = _ctypes.byref
sizeof = _ctypes.sizeof
addressof = _ctypes.addressof
get_errno = _ctypes.get_errno


def _simple(name: str, code: str) -> type:
    """A C scalar type, as ctypes defines it (`_type_` is struct's format letter)."""
    return type(name, (_ctypes._SimpleCData,), {"_type_": code})


# ctypes' names for the scalar types the bindings use
c_int = _simple("c_int", "i")
c_uint = _simple("c_uint", "I")
c_long = _simple("c_long", "l")
c_ulong = _simple("c_ulong", "L")
c_ushort = _simple("c_ushort", "H")
c_char = _simple("c_char", "c")
c_void_p = _simple("c_void_p", "P")
c_uint64 = _simple("c_uint64", "Q")
c_uint32 = c_uint   # as in ctypes: the same C type


class _LibcFunc(_ctypes.CFuncPtr):
    """A C function of libc: cdecl, int result, errno saved for get_errno()."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class Library:
    """ctypes.CDLL(name, use_errno=True) for what we call: attribute -> function, cached."""

    def __init__(self, name: str):
        self._name = name
        # RTLD_NOW | RTLD_LOCAL, as CDLL's default mode on Linux.
        self._handle = _ctypes.dlopen(name, os.RTLD_NOW | _ctypes.RTLD_LOCAL)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        func = _LibcFunc((name, self))  # looks `name` up in self._handle (dlsym)
        func.__name__ = name
        setattr(self, name, func)
        return func


def create_string_buffer(init: bytes | int, size: int | None = None):
    """ctypes.create_string_buffer: a zeroed char array of `size` (or len(init)+1) bytes."""
    data = b"" if isinstance(init, int) else init
    n = init if isinstance(init, int) else (len(data) + 1 if size is None else size)
    return (c_char * n).from_buffer_copy(data.ljust(n, b"\0"))
