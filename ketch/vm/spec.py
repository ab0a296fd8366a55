"""From an OCI bundle to a micro-VM plan: what the runtime-spec fields become.

    process.args/env/cwd/user/terminal   the agent runs exactly that in the guest
    root.readonly                        the guest's root overlay is remounted read-only
    hostname                             the guest's hostname
    linux.resources.cpu quota/period     vCPUs, rounded up (cpuset count when no quota)
    linux.resources.memory.limit         guest RAM = limit + GUEST_EXTRA_MIB for the guest kernel
    mounts type bind, directory          virtiofs share (one virtiofsd each), "ro" honoured
    mounts type bind, regular file       copied into the guest at boot (hosts, resolv.conf ...)
    mounts type tmpfs                    tmpfs in the guest
    proc/sysfs/devpts/mqueue/cgroup...   provided by the guest init itself

Annotations the engine may set:
    ketch.vm.image-id   image id; the rootfs is that image unchanged (erofs cache key)
    ketch.vm.network    "user" (default: QEMU user networking) or "none"
    ketch.vm.ports      published ports as QEMU hostfwd rules, comma separated,
                        e.g. "tcp:127.0.0.1:8080-:80,udp::5353-:53"

QEMU, virtiofsd and the shim are placed in the container's cgroup
(linux.cgroupsPath, default <cgroup parent>/<id>) so stats and pause (the
freezer stops the whole VM) work as for containers; no limits are written
there -- the VM's size already bounds it, and a memory limit on QEMU would
kill the VM instead of the process inside it.

A new network namespace in linux.namespaces gives the shim (the container's
pid) a private, empty one: whatever the engine attaches to /proc/<pid>/ns/net
lands there, never in the host's; the guest's own traffic goes through QEMU
user networking, and published ports through ketch.vm.ports.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import InvalidArgument, NotFound
from ketch.vm.proto import Process

GUEST_EXTRA_MIB = 64        # what the guest kernel, agent and page tables take on top
DEFAULT_MEMORY_MIB = 512
MIN_MEMORY_MIB = 128
MAX_FILE_BIND = 1 << 20     # file binds travel in the per-run initramfs
_HOSTFWD = re.compile(r"^(tcp|udp):[0-9.]*:\d{1,5}-[0-9.]*:\d{1,5}$")
_GUEST_MOUNTS = {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"}


@dataclass
class Plan:
    bundle: Path
    rootfs: Path
    process: Process
    readonly: bool = False
    hostname: str = ""
    cpus: int = 1
    memory_mib: int = DEFAULT_MEMORY_MIB
    shares: list[tuple[Path, str, bool]] = field(default_factory=list)  # (host dir, dest, ro)
    files: list[tuple[Path, str]] = field(default_factory=list)         # (host file, dest)
    tmpfs: list[str] = field(default_factory=list)
    hostfwd: list[str] | None = field(default_factory=list)
    netns: bool = False        # config asks for a new network namespace (see shim.py)
    cgroups_path: str = ""     # linux.cgroupsPath; "" -> <cgroup parent>/<id>
    annotations: dict[str, str] = field(default_factory=dict)


def load_config(bundle: Path) -> dict:
    path = bundle / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"bundle {str(bundle)!r}: no config.json") from None
    except ValueError as exc:
        raise InvalidArgument(f"{path}: invalid JSON: {exc}") from None


def vcpus(resources: dict) -> int:
    cpu = resources.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period") or 100000
    host = os.cpu_count() or 1
    if quota and quota > 0:
        return max(1, min(host, math.ceil(quota / period)))
    cpus = cpu.get("cpus")
    if cpus:
        count = 0
        for part in str(cpus).split(","):
            lo, _, hi = part.partition("-")
            count += int(hi or lo) - int(lo) + 1
        return max(1, min(host, count))
    return 1


def memory_mib(resources: dict) -> int:
    limit = (resources.get("memory") or {}).get("limit")
    if not limit or limit < 0:
        return DEFAULT_MEMORY_MIB
    return max(MIN_MEMORY_MIB, math.ceil(limit / (1 << 20)) + GUEST_EXTRA_MIB)


def _mounts(plan: Plan, mounts: list[dict]) -> None:
    for m in mounts:
        dest, kind = m.get("destination", ""), m.get("type", "")
        opts = m.get("options") or []
        is_bind = kind == "bind" or "bind" in opts or "rbind" in opts
        if not is_bind:
            if kind == "tmpfs" and dest not in ("/dev", "/dev/shm"):
                plan.tmpfs.append(dest)
            elif kind not in _GUEST_MOUNTS and kind != "tmpfs":
                raise InvalidArgument(f"mount {dest!r}: type {kind!r} is not supported in a micro-VM")
            continue
        src = Path(m.get("source", ""))
        if not src.exists():
            raise NotFound(f"volume source {str(src)!r}: no such file or directory")
        if any(c.isspace() for c in dest):
            raise InvalidArgument(f"mount {dest!r}: white space in a destination is not supported")
        if src.is_dir():
            plan.shares.append((src, dest, "ro" in opts))
        elif src.stat().st_size <= MAX_FILE_BIND:
            plan.files.append((src, dest))
        else:
            raise InvalidArgument(f"mount {str(src)!r}: files larger than 1 MiB cannot be bound "
                                  "into a micro-VM; bind its directory")


def plan(bundle: Path) -> Plan:
    """Read and check the bundle; every error here happens before anything boots."""
    bundle = bundle.resolve()
    cfg = load_config(bundle)
    root = cfg.get("root") or {}
    rootfs = Path(root.get("path") or "rootfs")
    rootfs = rootfs if rootfs.is_absolute() else bundle / rootfs
    if not rootfs.is_dir():
        raise NotFound(f"rootfs {str(rootfs)!r}: no such directory")
    proc = cfg.get("process") or {}
    if not proc.get("args"):
        raise InvalidArgument("process.args must not be empty")
    annotations = {str(k): str(v) for k, v in (cfg.get("annotations") or {}).items()}
    resources = (cfg.get("linux") or {}).get("resources") or {}
    p = Plan(bundle=bundle, rootfs=rootfs, process=Process.from_oci(proc),
             readonly=bool(root.get("readonly")), hostname=cfg.get("hostname") or "",
             cpus=vcpus(resources), memory_mib=memory_mib(resources), annotations=annotations)
    _mounts(p, cfg.get("mounts") or [])
    p.cgroups_path = (cfg.get("linux") or {}).get("cgroupsPath") or ""
    p.netns = any(ns.get("type") == "network" and not ns.get("path")
                  for ns in (cfg.get("linux") or {}).get("namespaces") or [])
    network = annotations.get("ketch.vm.network", "user")
    if network == "none":
        p.hostfwd = None
    elif network != "user":
        raise InvalidArgument(f"ketch.vm.network {network!r}: expected \"user\" or \"none\"")
    else:
        rules = [r.strip() for r in annotations.get("ketch.vm.ports", "").split(",") if r.strip()]
        for rule in rules:
            if not _HOSTFWD.match(rule):
                raise InvalidArgument(f"ketch.vm.ports rule {rule!r}: expected "
                                      "proto:[hostaddr]:hostport-[guestaddr]:guestport")
        p.hostfwd = rules
    return p
