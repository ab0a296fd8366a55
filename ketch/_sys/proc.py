"""Process-level syscalls the runtime needs that ``os`` lacks; no policy.

prctl(2) options, sethostname/setdomainname, close_range(2), and ioctl
TIOCSCTTY. Everything here is a thin C call (ffi.py) that raises OSError.
"""

from __future__ import annotations

import os

from ketch._sys import check, libc

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

CLOSE_RANGE_CLOEXEC = 1 << 2
_SYS_CLOSE_RANGE = 436  # the same on every architecture (asm-generic numbering)

TIOCSCTTY = 0x540E


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return check(libc().prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


def sethostname(name: str) -> None:
    raw = name.encode()
    check(libc().sethostname(raw, len(raw)), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    raw = name.encode()
    check(libc().setdomainname(raw, len(raw)), f"setdomainname {name!r}")


def cloexec_from(first: int) -> None:
    """Mark every fd >= first close-on-exec (close_range CLOSE_RANGE_CLOEXEC).

    Falls back to walking /proc/self/fd on kernels before 5.11.
    """
    from ketch._sys.ffi import c_uint
    ret = libc().syscall(_SYS_CLOSE_RANGE, c_uint(first), c_uint(0xFFFFFFFF),
                         c_uint(CLOSE_RANGE_CLOEXEC))
    if ret == 0:
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def set_controlling_tty(fd: int) -> None:
    check(libc().ioctl(fd, TIOCSCTTY, 0), "ioctl TIOCSCTTY")
