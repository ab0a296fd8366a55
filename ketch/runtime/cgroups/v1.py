"""cgroup v1: runtime-spec linux.resources -> per-controller files; stats.

`paths` maps a controller to the container's directory in that controller's
hierarchy. A resource whose controller is missing raises FailedPrecondition
(runtime-spec: a value that cannot be mapped MUST error); a zero value means
"not set", as in runc.

Choices where the kernel and the spec disagree:
* memory.swap is the memory+swap total (memsw), written before or after the
  limit so that memsw >= limit holds at every step;
* memory.kernel: the kmem limit is a no-op on kernels >= 5.16 and the file is
  gone on some; written when present, skipped silently when absent (runc
  does the same: kernel memory accounting is deprecated);
* blockIO weights: blkio.weight (CFQ) or blkio.bfq.weight (BFQ; only
  non-root cgroups show it). leafWeight has no BFQ counterpart and CFQ left
  the kernel in 5.0, so on current kernels it is an error naming the missing
  blkio.leaf_weight, not silently dropped (runc fails the same way).
"""

from __future__ import annotations

import os

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.runtime.cgroups import devices, fs

F = "linux.resources"


def _dir(paths: dict[str, str], ctrl: str, field: str) -> str:
    if ctrl not in paths:
        raise FailedPrecondition(f"{field}: the {ctrl} cgroup controller is not available on this host")
    return paths[ctrl]


def apply(paths: dict[str, str], r: dict, extra_devices: list | None = None) -> None:
    if r.get("memory"):
        _memory(paths, r["memory"])
    if r.get("cpu"):
        _cpu(paths, r["cpu"])
    if (r.get("pids") or {}).get("limit"):
        limit = r["pids"]["limit"]
        fs.write(_dir(paths, "pids", f"{F}.pids"), "pids.max", limit if limit > 0 else "max",
                 f"{F}.pids.limit")
    if r.get("blockIO"):
        _blkio(paths, r["blockIO"])
    if r.get("hugepageLimits"):
        for i, h in enumerate(r["hugepageLimits"]):
            d = _dir(paths, "hugetlb", f"{F}.hugepageLimits[{i}]")
            fs.write(d, f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"], f"{F}.hugepageLimits[{i}]")
    if r.get("network"):
        _network(paths, r["network"])
    if r.get("rdma"):
        raise FailedPrecondition(f"{F}.rdma: the rdma cgroup controller is not supported by ketch-runc")
    if r.get("devices") is not None:
        rules = devices.parse(r["devices"])
        devices.apply_v1(_dir(paths, "devices", f"{F}.devices"), rules,
                         devices.from_linux_devices(extra_devices))
    if r.get("unified"):
        _unified(paths, r["unified"])


def _memory(paths: dict[str, str], m: dict) -> None:
    d = _dir(paths, "memory", f"{F}.memory")
    f = f"{F}.memory"
    limit, swap = m.get("limit") or 0, m.get("swap") or 0
    if m.get("reservation"):
        fs.write(d, "memory.soft_limit_in_bytes", m["reservation"], f"{f}.reservation")
    if limit == -1 and not swap and fs.exists(d, "memory.memsw.limit_in_bytes"):
        swap = -1  # unlimited memory with swap unset: memory+swap unlimited too (runc)
    if swap and not fs.exists(d, "memory.memsw.limit_in_bytes"):
        if swap != -1:
            raise FailedPrecondition(f"{f}.swap: swap accounting is disabled on this host (no memory.memsw.*)")
        swap = 0
    if limit and swap:
        # memsw must stay >= limit after each write: grow memsw first, shrink it last.
        current = fs.read_int(d, "memory.memsw.limit_in_bytes", -1)
        order = [("memory.memsw.limit_in_bytes", swap, "swap"), ("memory.limit_in_bytes", limit, "limit")]
        if not (swap == -1 or current == -1 or swap > current):
            order.reverse()
        for name, value, key in order:
            fs.write(d, name, value, f"{f}.{key}")
    elif limit:
        fs.write(d, "memory.limit_in_bytes", limit, f"{f}.limit")
    elif swap:
        fs.write(d, "memory.memsw.limit_in_bytes", swap, f"{f}.swap")
    if m.get("kernel") and fs.exists(d, "memory.kmem.limit_in_bytes"):
        fs.write(d, "memory.kmem.limit_in_bytes", m["kernel"], f"{f}.kernel")
    if m.get("kernelTCP"):
        fs.write(d, "memory.kmem.tcp.limit_in_bytes", m["kernelTCP"], f"{f}.kernelTCP")
    if m.get("swappiness") is not None and m["swappiness"] != -1:
        if not 0 <= m["swappiness"] <= 100:
            raise InvalidArgument(f"{f}.swappiness: {m['swappiness']} is not 0..100")
        fs.write(d, "memory.swappiness", m["swappiness"], f"{f}.swappiness")
    if m.get("disableOOMKiller"):
        fs.write(d, "memory.oom_control", 1, f"{f}.disableOOMKiller")
    if m.get("useHierarchy") is not None:
        fs.write(d, "memory.use_hierarchy", int(m["useHierarchy"]), f"{f}.useHierarchy")


def _cpu(paths: dict[str, str], c: dict) -> None:
    f = f"{F}.cpu"
    if c.get("shares"):
        d = _dir(paths, "cpu", f)
        fs.write(d, "cpu.shares", c["shares"], f"{f}.shares")
        got = fs.read_int(d, "cpu.shares")
        if got and got != c["shares"]:  # the kernel clamps to [2, 262144] silently
            raise InvalidArgument(f"{f}.shares: {c['shares']} is out of range (the kernel set {got})")
    period, quota = c.get("period") or 0, c.get("quota") or 0
    if period or quota:
        d = _dir(paths, "cpu", f)
        writes = [("cpu.cfs_period_us", period, "period"), ("cpu.cfs_quota_us", quota, "quota")]
        writes = [w for w in writes if w[1]]
        try:
            for name, value, key in writes:
                fs.write(d, name, value, f"{f}.{key}")
        except InvalidArgument:
            # A new period can be refused against the old quota (or the reverse): other order.
            for name, value, key in reversed(writes):
                fs.write(d, name, value, f"{f}.{key}")
    if c.get("burst") is not None:
        fs.write(_dir(paths, "cpu", f), "cpu.cfs_burst_us", c["burst"], f"{f}.burst")
    if c.get("realtimePeriod"):
        fs.write(_dir(paths, "cpu", f), "cpu.rt_period_us", c["realtimePeriod"], f"{f}.realtimePeriod")
    if c.get("realtimeRuntime"):
        fs.write(_dir(paths, "cpu", f), "cpu.rt_runtime_us", c["realtimeRuntime"], f"{f}.realtimeRuntime")
    if c.get("idle") is not None:
        fs.write(_dir(paths, "cpu", f), "cpu.idle", c["idle"], f"{f}.idle")
    if c.get("cpus"):
        fs.write(_dir(paths, "cpuset", f), "cpuset.cpus", c["cpus"], f"{f}.cpus")
    if c.get("mems"):
        fs.write(_dir(paths, "cpuset", f), "cpuset.mems", c["mems"], f"{f}.mems")


def _blkio(paths: dict[str, str], b: dict) -> None:
    f = f"{F}.blockIO"
    d = _dir(paths, "blkio", f) if any(b.get(k) for k in b) else None
    if d is None:
        return
    bfq = fs.exists(d, "blkio.bfq.weight") and not fs.exists(d, "blkio.weight")
    if b.get("weight"):
        fs.write(d, "blkio.bfq.weight" if bfq else "blkio.weight", b["weight"], f"{f}.weight")
    if b.get("leafWeight"):
        fs.write(d, "blkio.leaf_weight", b["leafWeight"], f"{f}.leafWeight")
    for i, wd in enumerate(b.get("weightDevice") or []):
        dev = f"{wd['major']}:{wd['minor']}"
        if wd.get("weight"):
            name = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
            fs.write(d, name, f"{dev} {wd['weight']}", f"{f}.weightDevice[{i}]")
        if wd.get("leafWeight"):
            fs.write(d, "blkio.leaf_weight_device", f"{dev} {wd['leafWeight']}", f"{f}.weightDevice[{i}]")
    for key, name in THROTTLE_FILES.items():
        for i, t in enumerate(b.get(key) or []):
            fs.write(d, name, f"{t['major']}:{t['minor']} {t['rate']}", f"{f}.{key}[{i}]")


THROTTLE_FILES = {
    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
}


def _network(paths: dict[str, str], n: dict) -> None:
    f = f"{F}.network"
    if n.get("classID") is not None:
        fs.write(_dir(paths, "net_cls", f), "net_cls.classid", n["classID"], f"{f}.classID")
    for i, p in enumerate(n.get("priorities") or []):
        fs.write(_dir(paths, "net_prio", f), "net_prio.ifpriomap", f"{p['name']} {p['priority']}",
                 f"{f}.priorities[{i}]")


def _unified(paths: dict[str, str], unified: dict) -> None:
    """linux.resources.unified names cgroup v2 files: only the hybrid unified dir has them."""
    d = paths.get("unified")
    if d is None:
        raise InvalidArgument(f"{F}.unified: needs cgroup v2, this host has v1 only")
    for name, value in unified.items():
        if "/" in name or name.startswith("."):
            raise InvalidArgument(f"{F}.unified: bad file name {name!r}")
        fs.write(d, name, value, f"{F}.unified[{name!r}]")


# --- stats, in the shape of runc's `events --stats` data ------------------------------

def _memory_entry(d: str, prefix: str) -> dict:
    return {
        "limit": fs.read_int(d, f"{prefix}.limit_in_bytes"),
        "usage": fs.read_int(d, f"{prefix}.usage_in_bytes"),
        "max": fs.read_int(d, f"{prefix}.max_usage_in_bytes"),
        "failcnt": fs.read_int(d, f"{prefix}.failcnt"),
    }


def _blkio_entries(d: str, name: str) -> list[dict]:
    out = []
    try:
        text = fs.read(d, name)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def stats(paths: dict[str, str]) -> dict:
    out: dict = {"cpu": {}, "memory": {}, "pids": {}, "blkio": {}, "hugetlb": {}}
    if "cpuacct" in paths:
        d = paths["cpuacct"]
        tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        st = fs.read_kv(d, "cpuacct.stat")
        try:
            percpu = [int(x) for x in fs.read(d, "cpuacct.usage_percpu").split()]
        except OSError:
            percpu = []
        out["cpu"]["usage"] = {
            "total": fs.read_int(d, "cpuacct.usage"), "percpu": percpu,
            "kernel": st.get("system", 0) * tick, "user": st.get("user", 0) * tick,
        }
    if "cpu" in paths:
        st = fs.read_kv(paths["cpu"], "cpu.stat")
        out["cpu"]["throttling"] = {"periods": st.get("nr_periods", 0),
                                    "throttledPeriods": st.get("nr_throttled", 0),
                                    "throttledTime": st.get("throttled_time", 0)}
    if "memory" in paths:
        d = paths["memory"]
        raw = fs.read_kv(d, "memory.stat")
        out["memory"] = {
            "cache": raw.get("total_cache", raw.get("cache", 0)),
            "usage": _memory_entry(d, "memory"),
            "swap": _memory_entry(d, "memory.memsw"),
            "kernel": _memory_entry(d, "memory.kmem"),
            "kernelTCP": _memory_entry(d, "memory.kmem.tcp"),
            "raw": raw,
        }
    if "pids" in paths:
        limit = fs.read_int(paths["pids"], "pids.max")
        out["pids"] = {"current": fs.read_int(paths["pids"], "pids.current"),
                       "limit": 0 if limit == fs.UNLIMITED else limit}
    if "blkio" in paths:
        d = paths["blkio"]
        # The scheduler's own counters when it has them (CFQ, then BFQ), else the
        # throttle layer's, which count every bio (runc reads them in this order).
        prefix = next((p for p in ("blkio.", "blkio.bfq.")
                       if fs.exists(d, f"{p}io_service_bytes_recursive")), "blkio.throttle.")
        out["blkio"] = {
            "ioServiceBytesRecursive": _blkio_entries(d, f"{prefix}io_service_bytes_recursive"),
            "ioServicedRecursive": _blkio_entries(d, f"{prefix}io_serviced_recursive"),
        }
    if "hugetlb" in paths:
        d = paths["hugetlb"]
        for name in sorted(os.listdir(d)):
            if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes"):
                size = name.split(".")[1]
                out["hugetlb"][size] = {"usage": fs.read_int(d, name),
                                        "max": fs.read_int(d, f"hugetlb.{size}.max_usage_in_bytes"),
                                        "failcnt": fs.read_int(d, f"hugetlb.{size}.failcnt")}
    return out
