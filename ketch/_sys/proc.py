"""Process-level syscalls the runtime needs that ``os`` lacks; no policy.

prctl(2) options, sethostname/setdomainname, close_range(2), ioctl
TIOCSCTTY, and clone3(2) into a cgroup. Everything here is a thin C call
(ffi.py) that raises OSError.
"""

from __future__ import annotations

import os
import sys

from ketch._sys import check, libc

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

CLOSE_RANGE_CLOEXEC = 1 << 2
_SYS_CLOSE_RANGE = 436  # the same on every architecture (asm-generic numbering)
_SYS_CLONE3 = 435       # likewise
_CLONE_INTO_CGROUP = 0x200000000
_SIGCHLD = 17

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


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(2), the child born in the cgroup2 directory `cgroup_fd` (clone3 with
    CLONE_INTO_CGROUP, Linux >= 5.7): no migration, so none of the global lock
    a cgroup.procs write takes (on v1 and hybrid hosts it waits for an RCU grace
    period, 7-25 ms on these machines). Returns 0 in the child, its pid in us.

    This is the raw system call, not os.fork(): the child skips CPython's
    after-fork work (re-creating the GIL, forgetting other threads, running
    os.register_at_fork hooks such as the one `threading` registers, so
    `threading` must not be used in the child) and glibc's (the thread id
    glibc caches keeps the parent's value; raise(3), pthread_kill and
    recursive/robust mutexes read it, so the child must not use them). The
    caller must be single-threaded. Its one user is init's stage 1
    (bootstrap.py), whose child runs init's own code to execve and nothing else.
    """
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    # stack_size, tls, set_tid, set_tid_size, cgroup (u64 each; the v2 layout)
    fields = [_CLONE_INTO_CGROUP, 0, 0, 0, _SIGCHLD, 0, 0, 0, 0, 0, cgroup_fd]
    args = b"".join(v.to_bytes(8, sys.byteorder) for v in fields)
    return check(libc().syscall(_SYS_CLONE3, args, len(args)), "clone3 into cgroup")

