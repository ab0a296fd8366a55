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


class c_int(_ctypes._SimpleCData):  # noqa: N801 - ctypes' names
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "I"


class c_long(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "L"


class c_ushort(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "H"


class c_char(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "c"


class c_void_p(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "P"


class c_uint32(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "I"


class c_uint64(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "Q"


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
