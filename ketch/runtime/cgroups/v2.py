"""cgroup v2 (unified): runtime-spec linux.resources -> one directory's files; stats.

runtime-spec speaks v1 units; they are converted as runc does:

    cpu.weight  = 1 + (shares - 2) * 9999 / 262142      shares 2..262144 -> 1..10000
    io.weight   = 1 + (weight - 10) * 9999 / 990        blkio 10..1000   -> 1..10000
    cpu.max     = "<quota|max> <period>"
    memory.swap.max = swap - limit                      spec swap is memory+swap
    memory.low  = reservation

Knobs v2 does not have (kernel memory, kernelTCP, swappiness,
disableOOMKiller, leaf weights) are ignored when unset or at their neutral
value and are an error otherwise, except kernel/kernelTCP which runc also
ignores (kernel memory is always accounted on v2).
"""

from __future__ import annotations

from ketch.errors import InvalidArgument
from ketch.runtime.cgroups import devices, fs

F = "linux.resources"


def shares_to_weight(shares: int) -> int:
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_max(limit: int, swap: int) -> int | str:
    """memory.swap.max for a spec (limit, memory+swap) pair."""
    if swap == -1:
        return "max"
    if limit in (0, -1):
        raise InvalidArgument(f"{F}.memory.swap: needs memory.limit on cgroup v2")
    if swap < limit:
        raise InvalidArgument(f"{F}.memory.swap: {swap} is below memory.limit {limit}")
    return swap - limit


def apply(directory: str, r: dict, extra_devices: list | None = None) -> None:
    d = directory
    m = r.get("memory") or {}
    if m.get("limit"):
        fs.write(d, "memory.max", "max" if m["limit"] == -1 else m["limit"], f"{F}.memory.limit")
    if m.get("swap"):
        fs.write(d, "memory.swap.max", swap_max(m.get("limit") or 0, m["swap"]), f"{F}.memory.swap")
    elif m.get("limit") == -1 and fs.exists(d, "memory.swap.max"):
        # v1 semantics: unlimited memory with swap unset means unlimited memory+swap.
        fs.write(d, "memory.swap.max", "max", f"{F}.memory.swap")
    if m.get("reservation"):
        fs.write(d, "memory.low", "max" if m["reservation"] == -1 else m["reservation"],
                 f"{F}.memory.reservation")
    if m.get("swappiness") not in (None, -1):
        raise InvalidArgument(f"{F}.memory.swappiness: not supported on cgroup v2")
    if m.get("disableOOMKiller"):
        raise InvalidArgument(f"{F}.memory.disableOOMKiller: not supported on cgroup v2")
    c = r.get("cpu") or {}
    if c.get("shares"):
        fs.write(d, "cpu.weight", shares_to_weight(c["shares"]), f"{F}.cpu.shares")
    if c.get("quota") or c.get("period"):
        quota = c.get("quota") or 0
        fs.write(d, "cpu.max", f"{quota if quota > 0 else 'max'} {c.get('period') or 100000}",
                 f"{F}.cpu.quota")
    if c.get("burst") is not None:
        fs.write(d, "cpu.max.burst", c["burst"], f"{F}.cpu.burst")
    if c.get("idle") is not None:
        fs.write(d, "cpu.idle", c["idle"], f"{F}.cpu.idle")
    if c.get("realtimeRuntime") or c.get("realtimePeriod"):
        raise InvalidArgument(f"{F}.cpu.realtime*: not supported on cgroup v2")
    if c.get("cpus"):
        fs.write(d, "cpuset.cpus", c["cpus"], f"{F}.cpu.cpus")
    if c.get("mems"):
        fs.write(d, "cpuset.mems", c["mems"], f"{F}.cpu.mems")
    limit = (r.get("pids") or {}).get("limit")
    if limit:
        fs.write(d, "pids.max", limit if limit > 0 else "max", f"{F}.pids.limit")
    _io(d, r.get("blockIO") or {})
    for i, h in enumerate(r.get("hugepageLimits") or []):
        fs.write(d, f"hugetlb.{h['pageSize']}.max", h["limit"], f"{F}.hugepageLimits[{i}]")
    if r.get("network"):
        raise InvalidArgument(f"{F}.network: net_cls/net_prio do not exist on cgroup v2")
    if r.get("rdma"):
        for name, lim in r["rdma"].items():
            words = [f"{kernel}={lim[spec]}" for spec, kernel in
                     (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object"))
                     if lim.get(spec) is not None]
            fs.write(d, "rdma.max", " ".join([name, *words]), f"{F}.rdma")
    for name, value in (r.get("unified") or {}).items():
        if "/" in name or name.startswith("."):
            raise InvalidArgument(f"{F}.unified: bad file name {name!r}")
        fs.write(d, name, value, f"{F}.unified[{name!r}]")
    if r.get("devices") is not None:
        devices.apply_v2(d, devices.parse(r["devices"]), devices.from_linux_devices(extra_devices))


def _io(d: str, b: dict) -> None:
    f = f"{F}.blockIO"
    if b.get("weight"):
        fs.write(d, "io.weight", blkio_to_io_weight(b["weight"]), f"{f}.weight")
    if b.get("leafWeight"):
        raise InvalidArgument(f"{f}.leafWeight: not supported on cgroup v2")
    for i, wd in enumerate(b.get("weightDevice") or []):
        if wd.get("weight"):
            fs.write(d, "io.weight", f"{wd['major']}:{wd['minor']} {blkio_to_io_weight(wd['weight'])}",
                     f"{f}.weightDevice[{i}]")
    keys = {"throttleReadBpsDevice": "rbps", "throttleWriteBpsDevice": "wbps",
            "throttleReadIOPSDevice": "riops", "throttleWriteIOPSDevice": "wiops"}
    for key, word in keys.items():
        for i, t in enumerate(b.get(key) or []):
            fs.write(d, "io.max", f"{t['major']}:{t['minor']} {word}={t['rate']}", f"{f}.{key}[{i}]")


def stats(directory: str) -> dict:
    d = directory
    cpu = fs.read_kv(d, "cpu.stat")
    mem = fs.read_kv(d, "memory.stat")
    events = fs.read_kv(d, "memory.events")
    pids_max = fs.read_int(d, "pids.max")
    out = {
        "cpu": {
            "usage": {"total": cpu.get("usage_usec", 0) * 1000, "kernel": cpu.get("system_usec", 0) * 1000,
                      "user": cpu.get("user_usec", 0) * 1000},
            "throttling": {"periods": cpu.get("nr_periods", 0), "throttledPeriods": cpu.get("nr_throttled", 0),
                           "throttledTime": cpu.get("throttled_usec", 0) * 1000},
        },
        "memory": {
            "cache": mem.get("file", 0),
            "usage": {"limit": fs.read_int(d, "memory.max"), "usage": fs.read_int(d, "memory.current"),
                      "max": fs.read_int(d, "memory.peak"), "failcnt": events.get("max", 0)},
            "swap": {"limit": fs.read_int(d, "memory.swap.max"), "usage": fs.read_int(d, "memory.swap.current"),
                     "failcnt": 0},
            "raw": mem,
        },
        "pids": {"current": fs.read_int(d, "pids.current"), "limit": 0 if pids_max == fs.UNLIMITED else pids_max},
        "blkio": {"ioServiceBytesRecursive": [], "ioServicedRecursive": []},
        "hugetlb": {},
    }
    try:
        io = fs.read(d, "io.stat")
    except OSError:
        io = ""
    for line in io.splitlines():
        dev, *pairs = line.split()
        major, minor = (int(x) for x in dev.split(":"))
        kv = dict(p.split("=", 1) for p in pairs if "=" in p)
        for key, op, bucket in (("rbytes", "Read", "ioServiceBytesRecursive"),
                                ("wbytes", "Write", "ioServiceBytesRecursive"),
                                ("rios", "Read", "ioServicedRecursive"),
                                ("wios", "Write", "ioServicedRecursive")):
            if key in kv:
                out["blkio"][bucket].append({"major": major, "minor": minor, "op": op, "value": int(kv[key])})
    return out

