"""A benchmark run: pick runtimes, measure each in turn, clean up, verify.

The run owns a private work directory (default <KETCH_ROOT>/bench/<run id>)
holding ketch's roots for this run, podman's store, runc's bundles and
volumes; a private cgroup parent (<KETCH_CGROUP_PARENT>/bench-<run id>); and
the list of everything it started. Whatever happens, the end of the run
removes every instance by id, checks that none remains (`ps -a`, runc list,
processes naming the run's token), unmounts what is left under the work
directory, removes the cgroups and the directory, and records what it found.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ketch import paths
from ketch.bench import measure, probes, rootfs, throughput
from ketch.bench.ocirunc import Runc
from ketch.bench.results import METRICS, Result, Run, RuntimeInfo, missing
from ketch.bench.runtimes import (
    Docker,
    KetchContainer,
    KetchMicroVM,
    NotAvailable,
    Podman,
    Runtime,
    Workspace,
)
from ketch.bench.vms import KetchFullVM
from ketch.bench.workloads import CPU_BYTES, IO_MB

ADAPTERS: dict[str, type[Runtime]] = {
    "container": KetchContainer, "microvm": KetchMicroVM, "fullvm": KetchFullVM,
    "runc": Runc, "podman": Podman, "docker": Docker,
}
ALIASES = {"vm": "microvm", "micro-vm": "microvm", "full-vm": "fullvm", "ketch": "container"}

#: What --only can select; each group is one or more steps.
GROUPS = ("start", "http", "memory", "workload")
#: The group of each step of steps(), in order.
STEP_GROUPS = ("start", "http", "memory", "memory", "workload")

#: progress(message, steps done, steps planned)
Progress = Callable[[str, int, int], None]


class _Steps:
    """Counts steps for the progress callback: one check + one prepare + the groups' steps."""

    def __init__(self, progress: Progress, runtimes: int, per_runtime: int):
        self.progress, self.done = progress, 0
        self.per_runtime = 2 + per_runtime
        self.total = runtimes * self.per_runtime + 1

    def __call__(self, msg: str) -> None:
        self.progress(msg, self.done, self.total)
        self.done += 1


@dataclass
class Options:
    mode: str = "quick"                # "quick" or "full"
    runs: int | None = None            # -n; default from plan()
    runtimes: list[str] | None = None  # keys; default all
    budget: int | None = None          # density budget in bytes; default MemAvailable
    only: list[str] | None = None      # step groups (GROUPS); default all
    workdir: Path | None = None
    keep: bool = False                 # keep the work directory (debugging)


    def groups(self) -> list[str]:
        bad = [g for g in self.only or [] if g not in GROUPS]
        if bad:
            from ketch.errors import InvalidArgument
            raise InvalidArgument(f"unknown measurement {bad[0]!r} for --only "
                                  f"(known: {', '.join(GROUPS)})")
        return list(self.only or GROUPS)

    def selected(self) -> list[str]:
        if not self.runtimes:
            return list(ADAPTERS)
        keys = []
        for name in self.runtimes:
            key = ALIASES.get(name, name)
            if key not in ADAPTERS:
                from ketch.errors import InvalidArgument
                raise InvalidArgument(f"unknown runtime {name!r} for bench "
                                      f"(known: {', '.join(ADAPTERS)}, vm)")
            if key not in keys:
                keys.append(key)
        return keys


def host_info() -> dict:
    info = {"kernel": platform.release(), "cpus": os.cpu_count(),
            "mem_total": _meminfo("MemTotal"), "python": platform.python_version()}
    try:
        info["busybox"] = str(rootfs.host_busybox())
        info["busybox_sha256"] = rootfs.busybox_sha256()
    except NotAvailable as exc:
        info["busybox"] = str(exc)
    return info


def _meminfo(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def make_workspace(opts: Options) -> Workspace:
    run_id = uuid.uuid4().hex[:8]
    base = opts.workdir or paths.root() / "bench"
    d = Path(base) / run_id
    d.mkdir(parents=True, exist_ok=True)
    # Unix socket paths (a VM's QMP and control sockets) must fit in 108 bytes,
    # and they live under the run root next to a 64-hex container id: keep it short.
    runroot = Path(f"/run/kb-{run_id}")
    runroot.mkdir(mode=0o700)
    cg = f"{paths.cgroup_parent()}/bench-{run_id}"
    env = dict(os.environ)
    env["KETCH_CGROUP_PARENT"] = cg
    return Workspace(dir=d, runroot=runroot, run_id=run_id, cgroup_parent=cg, env=env)


def run(opts: Options, progress: Progress = lambda _msg, _done, _total: None) -> Run:
    """Measure every selected runtime; always clean up."""
    keys = opts.selected()
    per_runtime = sum(1 for g in STEP_GROUPS if g in opts.groups())
    step = _Steps(progress, len(keys), per_runtime)
    t0 = time.monotonic()
    ws = make_workspace(opts)
    result = Run(host=host_info(), options={
        "mode": opts.mode, "runs": opts.runs, "runtimes": keys, "only": opts.groups(),
        "workdir": str(ws.dir)})
    adapters: list[Runtime] = []
    try:
        budget = opts.budget or probes.mem_available()
        result.options["budget"] = budget
        for i, key in enumerate(keys):
            step.done = i * step.per_runtime  # an unavailable runtime skips its steps
            rt = ADAPTERS[key](ws)
            if key == "fullvm" and opts.mode == "quick" and not opts.runtimes:
                # Listed, with the reason, rather than silently dropped.
                result.runtimes.append(RuntimeInfo(rt.key, rt.label, rt.kind, False,
                                                   KetchFullVM.QUICK_SKIP))
                result.results += [missing(key, m, KetchFullVM.QUICK_SKIP) for m in METRICS]
                continue
            adapters.append(rt)
            info, results = measure_runtime(rt, opts, budget, step)
            result.runtimes.append(info)
            result.results += results
    finally:
        step.done = step.total - 1
        try:
            step("cleaning up")
        except Exception:  # noqa: BLE001 - a broken progress display must not stop cleanup
            pass
        result.cleanup = cleanup(ws, adapters, keep=opts.keep)
        result.seconds = time.monotonic() - t0
    return result


@dataclass(frozen=True)
class Plan:
    """How much of each measurement a runtime gets in this mode."""

    starts: int      # timed `echo ready` runs
    http: int        # HTTP start runs
    app: int         # instances of the 100 MB app
    rounds: int      # CPU + I/O rounds
    cpu_bytes: int
    io_mb: int


def plan(kind: str, opts: Options) -> Plan:
    """Sizes per mode and kind: a VM start costs seconds (tens under TCG), so VMs get
    fewer runs and smaller I/O files (TCG guests write at ~10-20 MB/s here); -n overrides
    the number of starts for every runtime."""
    vm = kind == "vm"
    if opts.mode == "quick":
        starts = opts.runs or (2 if vm else 3)
        return Plan(starts, 1, 1, 1 if vm else 3, CPU_BYTES["quick"],
                    IO_MB["quick"] // 4 if vm else IO_MB["quick"])
    starts = opts.runs or (5 if vm else 10)
    return Plan(starts, 3 if vm else 5, 3, 3 if vm else 5, CPU_BYTES["full"],
                IO_MB["full"] // 4 if vm else IO_MB["full"])


def steps(rt: Runtime, opts: Options, base, image) -> list:
    """(group, label, metrics, thunk) for each measurement, in order."""
    p = plan(rt.kind, opts)
    vol = rt.ws.dir / "volumes" / rt.key
    vol.mkdir(parents=True, exist_ok=True)
    return [
        ("start", "start to first output", ("start_trivial",),
         lambda: measure.start_trivial(rt, p.starts)),
        ("http", "start to HTTP answer", ("start_http",),
         lambda: measure.start_http(rt, p.http)),
        ("memory", "3 idle instances: memory, storage", ("mem_idle", "storage_1", "storage_3"),
         lambda: measure.memory_and_storage(rt, 3, "idle", base, image)),
        ("memory", "app touching 100 MB", ("mem_100m",),
         lambda: measure.memory_and_storage(rt, p.app, "100m", base, image)),
        ("workload", "CPU and I/O workloads", ("cpu", "io_write", "io_read"),
         lambda: throughput.measure(rt, p.rounds, p.cpu_bytes, p.io_mb, vol,
                                    rootfs.host_busybox())),
    ]


def measure_runtime(rt: Runtime, opts: Options, budget: int,
                    progress: _Steps) -> tuple[RuntimeInfo, list[Result]]:
    info = RuntimeInfo(key=rt.key, label=rt.label, kind=rt.kind, available=False)
    progress(f"{rt.label}: checking")
    try:
        rt.check()
        info.version = rt.version
        base = probes.disk_use(rt.storage_roots())
        progress(f"{rt.label}: preparing the busybox image")
        try:
            rt.prepare()
        finally:
            info.accel = rt.accel()  # decided by the first VM start, so asked after it
        image = probes.disk_use(rt.storage_roots())
        info.available = True
    except NotAvailable as exc:
        info.reason = str(exc)
        return info, [missing(rt.key, m, f"not available: {exc}") for m in METRICS]
    out: list[Result] = []
    groups = opts.groups()
    for group, label, metrics, thunk in steps(rt, opts, base, image):
        if group not in groups:
            out += [missing(rt.key, m, f"not measured: --only {','.join(groups)}")
                    for m in metrics]
            continue
        progress(f"{rt.label}: {label}")
        try:
            got = thunk()
        except NotAvailable as exc:
            got = [missing(rt.key, m, str(exc)) for m in metrics]
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            got = [missing(rt.key, m, f"failed: {type(exc).__name__}: {exc}") for m in metrics]
        done = {r.metric for r in got}
        got += [missing(rt.key, m, "not measured: an earlier step of this group failed")
                for m in metrics if m not in done]
        out += got
    mem = next((r for r in out if r.metric == "mem_idle"), None)
    out.append(measure.density(rt.key, mem, budget) if "memory" in groups else
               missing(rt.key, "density", f"not measured: --only {','.join(groups)}"))
    return info, out


def cleanup(ws: Workspace, adapters: list[Runtime], keep: bool = False) -> dict:
    """Remove what this run left, by id; report what had to be removed."""
    report: dict = {"leftover_instances": [], "killed_processes": [], "unmounted": [],
                    "cgroups_left": []}
    for rt in adapters:
        lister = getattr(rt, "leftovers", None)
        try:
            names = lister() if lister else []
        except (NotAvailable, OSError, subprocess.SubprocessError):
            names = []
        for name in names:
            report["leftover_instances"].append(f"{rt.key}:{name}")
            try:
                rt.remove(_instance(name))
            except (NotAvailable, OSError, subprocess.SubprocessError):
                pass
        forget = getattr(rt, "forget", None)
        if forget is not None:
            try:
                forget()
            except (NotAvailable, OSError, subprocess.SubprocessError):
                pass
    for pid in sorted(probes.pids_mentioning(f"kb-{ws.run_id}")
                      | probes.pids_mentioning(str(ws.dir))
                      | probes.pids_mentioning(str(ws.runroot))):
        report["killed_processes"].append(f"{pid} {probes.proc_cmdline(pid)[:80]}")
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    for mnt in probes.mounts_under(ws.dir) + probes.mounts_under(ws.runroot):
        report["unmounted"].append(mnt)
        subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=30)
    time.sleep(0.1 if report["killed_processes"] else 0)
    report["cgroups_left"] = probes.remove_cgroup_tree(ws.cgroup_parent)
    if not keep:
        shutil.rmtree(ws.dir, ignore_errors=True)
        shutil.rmtree(ws.runroot, ignore_errors=True)
    report["clean"] = not any(report[k] for k in ("leftover_instances", "killed_processes",
                                                  "unmounted", "cgroups_left"))
    return report


def _instance(name: str):
    from ketch.bench.runtimes import Instance
    return Instance(name=name, id=name)
