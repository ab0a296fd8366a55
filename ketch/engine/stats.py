"""`ketch stats`: CPU, memory, network, block I/O and pids of running containers.

Samples come from the container's cgroups (runc's `events --stats` shape,
read in-process by ketch.runtime.cgroups; the runtime's `events --stats`
for micro-VMs) and from /proc/<pid>/net/dev, which shows the container's network
namespace. CPU % is Docker's: container CPU time delta over host CPU time
delta between two samples, times the number of CPUs.
"""

from __future__ import annotations

import json
import os

from ketch.engine import ocicli
from ketch.engine.containers import Container


def _host_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    ticks = sum(int(x) for x in fields)
    return ticks * (10**9 // os.sysconf("SC_CLK_TCK"))


def _net(pid: int) -> tuple[int, int]:
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            for line in f.readlines()[2:]:
                name, _, rest = line.partition(":")
                if name.strip() == "lo":
                    continue
                cols = rest.split()
                rx, tx = rx + int(cols[0]), tx + int(cols[8])
    except (OSError, ValueError, IndexError):
        pass
    return rx, tx


def _runtime_stats(c: Container) -> dict:
    """runc's `events --stats` data: read in-process from the container's cgroups when it
    lives in them (not a micro-VM), else asked of the runtime (one process per sample)."""
    if not ocicli.is_vm(c.options.runtime):
        try:
            from ketch import paths
            from ketch.runtime.cgroups import manager_for
            return manager_for(f"/{paths.cgroup_parent()}/{c.id}", c.id).stats()
        except Exception:  # noqa: BLE001 - fall back to the runtime's own view
            pass
    proc = ocicli.run(c.options.runtime, "events", "--stats", c.id, check=False, timeout=20)
    try:
        return json.loads(proc.stdout.decode().splitlines()[0])["data"]
    except (ValueError, IndexError, KeyError):
        return {}


def sample(c: Container) -> dict:
    data = _runtime_stats(c)
    mem = data.get("memory", {})
    usage = mem.get("usage", {})
    raw = mem.get("raw", {})
    # Docker subtracts the page cache (inactive_file) from usage.
    used = max(usage.get("usage", 0) - raw.get("total_inactive_file",
                                                raw.get("inactive_file", 0)), 0)
    blk_r = blk_w = 0
    for e in data.get("blkio", {}).get("ioServiceBytesRecursive") or []:
        if e.get("op", "").lower() == "read":
            blk_r += e.get("value", 0)
        elif e.get("op", "").lower() == "write":
            blk_w += e.get("value", 0)
    limit = usage.get("limit", 0)
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": data.get("cpu", {}).get("usage", {}).get("total", 0),
            "system": _host_cpu_ns(), "mem": used,
            "limit": min(limit, total_mem) if limit else total_mem,
            "net": _net(c.pid), "blk": (blk_r, blk_w),
            "pids": data.get("pids", {}).get("current", 0)}


def report(c: Container, before: dict, after: dict) -> dict:
    """Docker's `stats --format` fields from two samples."""
    from ketch.engine.humanize import human_size
    d_cpu = after["cpu"] - before["cpu"]
    d_sys = after["system"] - before["system"]
    cpu = d_cpu / d_sys * (os.cpu_count() or 1) * 100 if d_sys > 0 and d_cpu > 0 else 0.0
    mem_pct = after["mem"] / after["limit"] * 100 if after["limit"] else 0.0
    return {"Container": c.id[:12], "ID": c.id[:12], "Name": c.name,
            "CPUPerc": f"{cpu:.2f}%", "MemPerc": f"{mem_pct:.2f}%",
            "MemUsage": f"{_bin(after['mem'])} / {_bin(after['limit'])}",
            "NetIO": f"{human_size(after['net'][0])} / {human_size(after['net'][1])}",
            "BlockIO": f"{human_size(after['blk'][0])} / {human_size(after['blk'][1])}",
            "PIDs": str(after["pids"])}


def _bin(n: float) -> str:
    """Docker's BytesSize (binary units): "1.5MiB"."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024.0
        i += 1
    return f"{n:.4g}{units[i]}"
