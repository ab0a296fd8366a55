"""ketch-runc run vs runc run of /bin/true on a busybox bundle, alternating.

    .venv/bin/python bench/runtime_run.py [-n 30] [--ketch PATH] [--compare NAME=PATH ...]

Each round runs `ketch-runc run` and `runc run` once each (order alternating),
on the same bundle, each with its own --root in a temp dir; the median of
each and their ratio are printed, plus the cost of the CVE-2019-5736
defence (sealing a memfd copy of the interpreter, and exec'ing the copy
instead of the file). `--compare NAME=PATH` adds another ketch-runc launcher
(say, an older build) to the same alternation; ratios stay against runc.
Needs root, runc and /bin/busybox.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ketch.oci.runtime_spec import default_spec  # noqa: E402


def make_bundle(top: Path) -> Path:
    rootfs = top / "bundle/rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "bin/busybox")
    for name in ("true", "sh"):
        os.symlink("busybox", rootfs / "bin" / name)
    for d in ("proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir()
    spec = default_spec()
    spec["process"].update(terminal=False, args=["/bin/true"])
    (top / "bundle/config.json").write_text(json.dumps(spec))
    return top / "bundle"


def once(cmd: list[str], cpu: list[float] | None = None) -> float:
    """Wall time of one run; CPU time (user+sys of the whole reaped tree) into `cpu`."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return wall


def protection_cost(rounds: int = 20) -> dict:
    """Make each protected view of the interpreter (read-only bind mount, sealed memfd
    copy); exec each vs the file itself (`python -I -S -c pass`)."""
    from ketch.runtime.spawn import readonly_interpreter, sealed_interpreter
    makers = {"readonly": readonly_interpreter, "sealed": sealed_interpreter}
    t_make: dict[str, list[float]] = {k: [] for k in makers}
    for _ in range(rounds):
        for name, make in makers.items():
            t0 = time.perf_counter()
            os.close(make())
            t_make[name].append(time.perf_counter() - t0)

    def exec_via(fd: int | None) -> float:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            argv = [sys.executable, "-I", "-S", "-c", "pass"]
            os.execve(fd if fd is not None else sys.executable, argv, os.environ)
        os.waitpid(pid, 0)
        return time.perf_counter() - t0
    t_exec: dict[str, list[float]] = {"file": [], **{k: [] for k in makers}}
    for _ in range(rounds):
        t_exec["file"].append(exec_via(None))
        for name, make in makers.items():
            fd = make()
            t_exec[name].append(exec_via(fd))
            os.close(fd)
    ms = lambda xs: round(statistics.median(xs) * 1000, 2)  # noqa: E731
    return {**{f"make_{k}_ms": ms(v) for k, v in t_make.items()},
            **{f"exec_{k}_ms": ms(v) for k, v in t_exec.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="rounds (default 30)")
    ap.add_argument("--ketch", default=str(Path(sys.executable).parent / "ketch-runc"))
    ap.add_argument("--runc", default=shutil.which("runc") or "runc")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=PATH",
                    help="another ketch-runc to alternate with (repeatable)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        bundle = make_bundle(top)
        # State roots on tmpfs (/run), where both runtimes keep them by default.
        roots = tempfile.mkdtemp(prefix="ketch-bench-", dir="/run")
        cmds = {"ketch-runc": [args.ketch, "--root", f"{roots}/k"],
                "runc": [args.runc, "--root", f"{roots}/r"]}
        for i, item in enumerate(args.compare):
            name, _, path = item.partition("=")
            cmds[name] = [path, "--root", f"{roots}/c{i}"]
        times: dict[str, list[float]] = {k: [] for k in cmds}
        cpus: dict[str, list[float]] = {k: [] for k in cmds}
        try:
            for cmd in cmds.values():  # warm-up: page cache, pyc files
                once([*cmd, "run", "--bundle", str(bundle), "warm"])
            for i in range(args.n):
                names = list(cmds)
                order = names[i % len(names):] + names[:i % len(names)]  # each goes first in turn
                for name in order:
                    times[name].append(once([*cmds[name], "run", "--bundle", str(bundle),
                                             f"b{i}"], cpus[name]))
        finally:  # a runtime that fails must not leave the state roots in /run
            shutil.rmtree(roots, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"rounds: {args.n} (alternating)   load average: {os.getloadavg()[0]:.2f}")
    cpu = {k: statistics.median(v) * 1000 for k, v in cpus.items()}
    for k, v in med.items():
        print(f"{k:11s} median {v:7.1f} ms   min {min(times[k]) * 1000:7.1f} ms   "
              f"CPU (user+sys) median {cpu[k]:6.1f} ms")
    for k in med:
        if k != "runc":
            print(f"ratio {k}/runc: wall {med[k] / med['runc']:.2f}   "
                  f"min {min(times[k]) / min(times['runc']):.2f}   CPU {cpu[k] / cpu['runc']:.2f}")
    print(f"CVE-2019-5736 defence: {protection_cost()}")


if __name__ == "__main__":
    main()
