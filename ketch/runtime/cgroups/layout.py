"""Which cgroup hierarchies this host has, and where they are mounted.

Three layouts exist in the wild and all are supported:

    v1       one mount per controller (or co-mounted group) of type cgroup
    v2       one cgroup2 mount (/sys/fs/cgroup) holding every controller
    hybrid   v1 controllers plus a cgroup2 mount without controllers, usually
             /sys/fs/cgroup/unified (systemd's "hybrid" mode; this is what
             the development machines run)

A Layout maps a hierarchy key to its mount point: the controller name for v1
("memory", "cpu", ...; co-mounted controllers share a mount point), the
named hierarchy for name=<x> mounts ("name=systemd"), and "unified" for
cgroup2.
"""

from __future__ import annotations

import os

V1_CONTROLLERS = (
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
    "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc",
)
UNIFIED = "unified"


class Layout:
    # A plain class, not a dataclass: `dataclasses` pulls in `inspect`, tens of
    # milliseconds on the container start path.
    __slots__ = ("mode", "mounts")

    def __init__(self, mode: str, mounts: dict[str, str] | None = None):
        self.mode = mode                  # "v1", "v2" or "hybrid"
        self.mounts = dict(mounts or {})

    def __repr__(self) -> str:
        return f"Layout({self.mode!r}, {self.mounts!r})"

    def has(self, key: str) -> bool:
        return key in self.mounts

    def v2_controllers(self) -> set[str]:
        """Controllers the cgroup2 root offers (empty when there is no cgroup2 mount)."""
        root = self.mounts.get(UNIFIED)
        if not root:
            return set()
        try:
            with open(os.path.join(root, "cgroup.controllers")) as f:
                return set(f.read().split())
        except OSError:
            return set()


def parse_mountinfo(text: str) -> Layout:
    """A Layout from the text of /proc/self/mountinfo."""
    mounts: dict[str, str] = {}
    unified = None
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        fstype, _source, superopts = (post.split() + ["", ""])[:3]
        mountpoint = fields[4].replace("\\040", " ")
        if fstype == "cgroup2":
            unified = unified or mountpoint
        elif fstype == "cgroup":
            for opt in superopts.split(","):
                if opt in V1_CONTROLLERS or opt.startswith("name="):
                    mounts.setdefault(opt, mountpoint)
    if not mounts and unified:
        return Layout("v2", {UNIFIED: unified})
    if unified:
        mounts[UNIFIED] = unified
        return Layout("hybrid", mounts)
    return Layout("v1", mounts)


_detected: Layout | None = None


def detect() -> Layout:
    """The running host's layout (read once per process)."""
    global _detected
    if _detected is None:
        with open("/proc/self/mountinfo") as f:
            _detected = parse_mountinfo(f.read())
    return _detected
