"""unshare(2) and setns(2), and the CLONE_NEW* flags; no policy."""

from __future__ import annotations

from ketch._sys import check, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

#: runtime-spec namespace type -> clone flag
NS_FLAGS: dict[str, int] = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

#: runtime-spec namespace type -> name under /proc/<pid>/ns/
NS_PROC: dict[str, str] = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
    "user": "user", "cgroup": "cgroup", "time": "time",
}


def unshare(flags: int) -> None:
    check(libc().unshare(flags), f"unshare 0x{flags:x}")


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    check(libc().setns(fd, nstype), f"setns {what}".rstrip(), what or None)
