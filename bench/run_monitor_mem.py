"""Host memory of the per-container monitor: PSS of each ketch-monitor with N idle containers.

    sudo .venv/bin/python bench/run_monitor_mem.py [-n 50] [--runtime ketch-runc]

Starts N `sleep` containers (--network none) in a scratch root, sums the
PSS (/proc/<pid>/smaps_rollup) of their monitors (ketch-monitor), and for scale the
PSS of N idle Python interpreters (what a monitor written in Python would
cost). Prints one table; removes everything it made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ketch.bench.probes import remove_cgroup_tree

KETCH = str(Path(sys.executable).parent / "ketch")


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--runtime", default="")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ketch-monbench-"))
    env = {**os.environ, "KETCH_ROOT": str(tmp / "root"), "KETCH_RUNROOT": str(tmp / "run"),
           "KETCH_CGROUP_PARENT": f"ketch/bench-{os.getpid()}"}
    if args.runtime:
        env["KETCH_OCI_RUNTIME"] = args.runtime

    def ketch(*a: str) -> str:
        return subprocess.run([KETCH, *a], env=env, check=True, capture_output=True,
                              text=True).stdout

    ids: list[str] = []
    pythons: list[subprocess.Popen] = []
    try:
        ketch("bootstrap", "busybox", "-q")
        for _ in range(args.n):
            ids.append(ketch("run", "-d", "--network", "none", "busybox", "sleep", "3600")
                       .strip())
        time.sleep(2)   # let them settle: idle means idle
        mons = [int((tmp / "run" / "containers" / c / "monitor.pid").read_text()) for c in ids]
        mon_pss = [pss_kib(p) for p in mons]
        mon_rss = [rss_kib(p) for p in mons]
        for _ in range(args.n):
            pythons.append(subprocess.Popen([sys.executable, "-c",
                                             "import time, json, os; time.sleep(3600)"]))
        time.sleep(1)
        py_pss = [pss_kib(p.pid) for p in pythons]
        print(f"N={args.n} idle containers (busybox sleep, --network none)")
        print(f"{'process':<28}{'PSS/each KiB':>14}{'RSS/each KiB':>14}{'PSS total MiB':>15}")
        print(f"{'ketch-monitor':<28}{sum(mon_pss) / len(mon_pss):>14.0f}"
              f"{sum(mon_rss) / len(mon_rss):>14.0f}{sum(mon_pss) / 1024:>15.1f}")
        print(f"{'idle python3.11 (compare)':<28}{sum(py_pss) / len(py_pss):>14.0f}"
              f"{'':>14}{sum(py_pss) / 1024:>15.1f}")
    finally:
        for p in pythons:
            p.kill()
            p.wait()
        for c in ids:
            subprocess.run([KETCH, "rm", "-f", c], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        remove_cgroup_tree(env["KETCH_CGROUP_PARENT"])


if __name__ == "__main__":
    main()
