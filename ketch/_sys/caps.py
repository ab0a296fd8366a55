"""capget/capset and the prctl(2) calls that manage capability sets.

One syscall per function, no policy: callers (ketch.runtime.caps) decide
which capabilities to keep. Capability sets are Python ints used as
bitmasks (bit N = capability number N), as the kernel's 64-bit sets are.
"""

from __future__ import annotations

from ketch._sys import check, ffi, libc

# prctl(2) options (linux/prctl.h).
PR_SET_KEEPCAPS = 8
PR_GET_KEEPCAPS = 7
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# capget/capset header version with two 32-bit words per set (64 caps).
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ffi.Structure):
    _fields_ = [("version", ffi.c_uint32), ("pid", ffi.c_int)]


class _Data(ffi.Structure):
    _fields_ = [
        ("effective", ffi.c_uint32),
        ("permitted", ffi.c_uint32),
        ("inheritable", ffi.c_uint32),
    ]


def _prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "prctl") -> int:
    fn = libc().prctl
    fn.argtypes = [ffi.c_int, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong]
    fn.restype = ffi.c_int
    return check(fn(option, arg2, arg3, 0, 0), what)


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of `pid` (0: the calling thread)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_Data * 2)()
    check(libc().capget(ffi.byref(hdr), data), "capget")
    return tuple(  # type: ignore[return-value]
        getattr(data[0], f) | (getattr(data[1], f) << 32)
        for f in ("effective", "permitted", "inheritable")
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's three capability sets (bitmasks)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    check(libc().capset(ffi.byref(hdr), data), "capset")


def bounding_has(cap: int) -> bool:
    return _prctl(PR_CAPBSET_READ, cap, what="prctl(PR_CAPBSET_READ)") == 1


def bounding_drop(cap: int) -> None:
    _prctl(PR_CAPBSET_DROP, cap, what=f"prctl(PR_CAPBSET_DROP, {cap})")


def set_keepcaps(on: bool) -> None:
    _prctl(PR_SET_KEEPCAPS, int(on), what="prctl(PR_SET_KEEPCAPS)")


def set_no_new_privs() -> None:
    _prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")


def get_no_new_privs() -> bool:
    return _prctl(PR_GET_NO_NEW_PRIVS, what="prctl(PR_GET_NO_NEW_PRIVS)") == 1


def ambient_clear_all() -> None:
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


def ambient_raise(cap: int) -> None:
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, what=f"prctl(PR_CAP_AMBIENT_RAISE, {cap})")


def ambient_is_set(cap: int) -> bool:
    return _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, what="prctl(PR_CAP_AMBIENT_IS_SET)") == 1
