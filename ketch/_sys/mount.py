"""mount(2), umount2(2), pivot_root(2): the filesystem-tree syscalls, no policy.

Flags are plain ints named as in <sys/mount.h> (IntFlag would cost an
``enum`` import on the container start path); MS_* values are the kernel's.
"""

from __future__ import annotations

import os

from ketch._sys import check, libc

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

PROPAGATION = MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE

_SYS_pivot_root = 155  # x86_64 and aarch64 share no numbers; 155 is x86_64
_SYS_PIVOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2); OSError names the target."""
    ret = libc().mount(_b(source), _b(target), _b(fstype), flags, _b(data) if data else None)
    check(ret, f"mount {source or fstype or ''} on {target}", target)


def umount2(target: str, flags: int = 0) -> None:
    check(libc().umount2(_b(target), flags), f"umount {target}", target)


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _SYS_PIVOT.get(os.uname().machine, _SYS_pivot_root)
    check(libc().syscall(nr, _b(new_root), _b(put_old)), "pivot_root", new_root)


def chroot(path: str) -> None:
    os.chroot(path)
