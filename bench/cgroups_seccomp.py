"""What cgroup limits and the default seccomp profile add to a container start (root).

    .venv/bin/python bench/cgroups_seccomp.py [rounds]

Runs `<runtime> run` of /bin/true on a busybox bundle in two configs:
  plain      `ketch-runc spec` defaults (no resources, no seccomp)
  limited    + memory/swap, cpu shares/quota, pids, a device list, cgroupsPath,
             and ketch's Docker-style default seccomp profile (the same JSON for both)
for ketch-runc and runc, alternating in one run, and prints medians (ms) and
the limited-minus-plain cost of each runtime. Micro figures follow: the
cgroup manager alone (create + set + add + destroy with a forked member),
libseccomp compiling the default profile in memory, and prepare(spec)
taking the same program from the BPF cache instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
KETCH = os.path.join(os.path.dirname(sys.executable), "ketch-runc")
RES = {"memory": {"limit": 64 << 20, "swap": 128 << 20}, "pids": {"limit": 64},
       "cpu": {"shares": 512, "quota": 50000, "period": 100000},
       "devices": [{"allow": False, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}


def bundle(base: str, limited: bool) -> str:
    from ketch.runtime import seccomp

    d = os.path.join(base, "limited" if limited else "plain")
    os.makedirs(os.path.join(d, "rootfs", "bin"))
    shutil.copy(shutil.which("busybox") or "/bin/busybox", os.path.join(d, "rootfs", "bin", "busybox"))
    os.symlink("busybox", os.path.join(d, "rootfs", "bin", "true"))
    subprocess.run([KETCH, "spec"], cwd=d, check=True)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"].update(args=["/bin/true"], terminal=False)
    if limited:
        cfg["linux"]["resources"] = RES
        cfg["linux"]["cgroupsPath"] = "/ketch/bench-cg"
        cfg["linux"]["seccomp"] = seccomp.default_profile(cfg["process"]["capabilities"]["bounding"])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d


def start_ms(runtime: str, root: str, d: str, i: int) -> float:
    t = time.perf_counter()
    subprocess.run([runtime, "--root", root, "run", "--bundle", d, f"b{i}"], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def bench_runtimes(base: str) -> None:
    runc = shutil.which("runc")
    dirs = {"plain": bundle(base, False), "limited": bundle(base, True)}
    runtimes = {"ketch-runc": KETCH} | ({"runc": runc} if runc else {})
    times: dict[tuple[str, str], list[float]] = {}
    for i in range(ROUNDS):
        for name, exe in runtimes.items():
            for cfg, d in dirs.items():
                root = os.path.join(base, f"state-{name}")
                times.setdefault((name, cfg), []).append(start_ms(exe, root, d, i))
    for name in runtimes:
        p = statistics.median(times[(name, "plain")])
        lim = statistics.median(times[(name, "limited")])
        print(f"{name:11s} plain {p:7.1f} ms   limited {lim:7.1f} ms   cost {lim - p:+6.1f} ms")


def bench_manager() -> float:
    from ketch.runtime.cgroups import manager_for

    os.environ["KETCH_CGROUP_PARENT"] = f"ketch/bench-{os.getpid()}"
    out = []
    for i in range(ROUNDS):
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        t = time.perf_counter()
        m = manager_for(None, f"c{i}")
        m.create()
        m.set(RES)
        m.add(pid)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        m.destroy()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def bench_compile() -> tuple[float, float]:
    """(libseccomp compile, prepare from the cache) of the default profile, in ms."""
    from ketch.runtime import seccomp

    prof = seccomp.default_profile()
    compiled, cached = [], []
    os.environ["KETCH_RUNROOT"] = tempfile.mkdtemp(prefix="ketch-bench-rr-")
    try:
        seccomp.prepare(prof)  # fills the cache
        for _ in range(ROUNDS):
            t = time.perf_counter()
            seccomp.compile(prof)
            t1 = time.perf_counter()
            seccomp.prepare(prof)
            t2 = time.perf_counter()
            compiled.append((t1 - t) * 1000)
            cached.append((t2 - t1) * 1000)
    finally:
        shutil.rmtree(os.environ["KETCH_RUNROOT"], ignore_errors=True)
    return statistics.median(compiled), statistics.median(cached)


if __name__ == "__main__":
    print(f"rounds: {ROUNDS}, load average: {os.getloadavg()[0]:.1f}")
    base = tempfile.mkdtemp(prefix="ketch-bench-cg-")
    try:
        bench_runtimes(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"cgroup manager create+set+add+destroy  median {bench_manager():6.1f} ms")
    compiled, cached = bench_compile()
    print(f"seccomp default profile compile        median {compiled:6.1f} ms")
    print(f"seccomp default profile from the cache median {cached:6.1f} ms")
