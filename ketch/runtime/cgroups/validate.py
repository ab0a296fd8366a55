"""Check linux.resources before anything is created: types, ranges, host support.

Runs at `create` in the parent, so a bad value fails with one line naming the
field and leaves no cgroup, mount or state behind. What only the kernel can
judge (a limit below current usage, a cpuset outside the parent's) is left to
the write itself, which names the file.
"""

from __future__ import annotations

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.runtime.cgroups import devices
from ketch.runtime.cgroups.layout import Layout, detect

F = "linux.resources"


def _is_cpuset(text: str) -> bool:
    """'0-3,5' style lists (no regex: `re` compiles cost milliseconds at container start)."""
    for part in text.split(","):
        bounds = [b.strip() for b in part.split("-")]
        if not 1 <= len(bounds) <= 2 or not all(b.isdigit() for b in bounds):
            return False
    return True


def _is_pagesize(text: str) -> bool:
    return text[-2:] in ("KB", "MB", "GB", "TB") and text[:-2].isdigit()


def _int(obj: dict, key: str, field: str, lo: int | None = None, hi: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"{field}.{key}: must be an integer, not {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidArgument(f"{field}.{key}: {v} is out of range")
    return v


def _obj(r: dict, key: str) -> dict:
    v = r.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidArgument(f"{F}.{key}: must be an object")
    return v


def _need(layout: Layout, ctrl: str, field: str) -> None:
    if layout.mode == "v2":
        ok = ctrl in layout.v2_controllers() or ctrl in ("devices", "freezer")
    else:
        ok = layout.has(ctrl)
    if not ok:
        why = ""
        if layout.mode == "hybrid" and ctrl in layout.v2_controllers():
            # It sits unused in the unified tree; ketch never enables controllers in
            # the host's root cgroup, which using it there would need.
            why = " (not mounted as a v1 hierarchy; the host's cgroup2 root does not delegate it)"
        raise FailedPrecondition(
            f"{field}: the {ctrl} cgroup controller is not available on this host{why}")


def validate(resources: dict | None, layout: Layout | None = None) -> None:
    """Raise InvalidArgument (bad value) or FailedPrecondition (host lacks it)."""
    if resources is None:
        return
    layout = layout or detect()
    if not isinstance(resources, dict):
        raise InvalidArgument(f"{F}: must be an object")
    m = _obj(resources, "memory")
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        _int(m, key, f"{F}.memory", lo=-1)
    _int(m, "swappiness", f"{F}.memory", lo=-1, hi=100)
    limit, swap = m.get("limit") or 0, m.get("swap") or 0
    if limit > 0 and swap > 0 and swap < limit:
        raise InvalidArgument(f"{F}.memory.swap: {swap} is below memory.limit {limit} (swap counts memory+swap)")
    c = _obj(resources, "cpu")
    _int(c, "shares", f"{F}.cpu", lo=0)
    _int(c, "quota", f"{F}.cpu", lo=-1)
    _int(c, "period", f"{F}.cpu", lo=0)
    _int(c, "realtimeRuntime", f"{F}.cpu", lo=-1)
    _int(c, "realtimePeriod", f"{F}.cpu", lo=0)
    for key in ("cpus", "mems"):
        v = c.get(key)
        if v and (not isinstance(v, str) or not _is_cpuset(v)):
            raise InvalidArgument(f"{F}.cpu.{key}: {v!r} is not a list like 0-3,5")
    if c.get("cpus") or c.get("mems"):
        _need(layout, "cpuset", f"{F}.cpu")
    p = _obj(resources, "pids")
    _int(p, "limit", f"{F}.pids")
    b = _obj(resources, "blockIO")
    _int(b, "weight", f"{F}.blockIO", lo=0, hi=1000)
    _int(b, "leafWeight", f"{F}.blockIO", lo=0, hi=1000)
    if any(b.get(k) for k in b):
        _need(layout, "blkio" if layout.mode != "v2" else "io", f"{F}.blockIO")
    for i, h in enumerate(resources.get("hugepageLimits") or []):
        if not isinstance(h, dict) or not _is_pagesize(str(h.get("pageSize", ""))):
            raise InvalidArgument(f"{F}.hugepageLimits[{i}].pageSize: must look like 2MB")
        _int(h, "limit", f"{F}.hugepageLimits[{i}]", lo=0)
        _need(layout, "hugetlb", f"{F}.hugepageLimits[{i}]")
    n = _obj(resources, "network")
    if n.get("classID") is not None:
        _int(n, "classID", f"{F}.network", lo=0)
        _need(layout, "net_cls", f"{F}.network.classID")
    if n.get("priorities"):
        _need(layout, "net_prio", f"{F}.network.priorities")
    if resources.get("devices") is not None:
        devices.parse(resources["devices"])
    if resources.get("rdma") and layout.mode != "v2":
        raise FailedPrecondition(f"{F}.rdma: the rdma cgroup controller is not supported by ketch-runc on v1")
    u = resources.get("unified")
    if u is not None and not isinstance(u, dict):
        raise InvalidArgument(f"{F}.unified: must be an object of file name -> value")
