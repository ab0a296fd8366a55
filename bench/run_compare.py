"""`ketch run --rm busybox true` against docker and podman (when installed), alternating.

    sudo .venv/bin/python bench/run_compare.py [--rounds 10] [--ps 100]

Each round runs every contender once, in turn, so load changes hit all of
them alike; the medians are reported with docker's as the unit when docker
is present. Also timed: `ketch ps -a` with --ps created containers, and
`ketch --help`. Everything runs in a scratch KETCH_ROOT that is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KETCH = str(Path(sys.executable).parent / "ketch")


def timed(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-400:]}")
    return dt


def contenders(env: dict) -> dict[str, tuple[list[str], dict]]:
    out = {
        "ketch run --rm (ketch-runc, bridge)": ([KETCH, "run", "--rm", "busybox", "true"], env),
        "ketch run --rm --network none": ([KETCH, "run", "--rm", "--network", "none",
                                           "busybox", "true"], env),
    }
    if shutil.which("runc"):
        out["ketch run --rm --network none (runc)"] = (
            [KETCH, "run", "--rm", "--network", "none", "busybox", "true"],
            {**env, "KETCH_OCI_RUNTIME": shutil.which("runc")})
    for tool in ("docker", "podman"):
        # Only when usable: installed, daemon (docker) answering, image present.
        if shutil.which(tool) and subprocess.run(
                [tool, "image", "inspect", "busybox"], capture_output=True).returncode == 0:
            out[f"{tool} run --rm"] = ([tool, "run", "--rm", "busybox", "true"], dict(os.environ))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--ps", type=int, default=100)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ketch-runbench-"))
    env = {**os.environ, "KETCH_ROOT": str(tmp / "root"), "KETCH_RUNROOT": str(tmp / "run"),
           "KETCH_CGROUP_PARENT": f"ketch/bench-{os.getpid()}"}
    try:
        subprocess.run([KETCH, "bootstrap", "busybox", "-q"], env=env, check=True,
                       capture_output=True)
        runs = contenders(env)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for name, (argv, e) in runs.items():   # warm-up (page cache, bytecode)
            timed(argv, e)
        for _ in range(args.rounds):
            for name, (argv, e) in runs.items():
                times[name].append(timed(argv, e))
        base = statistics.median(times["docker run --rm"]) if "docker run --rm" in times \
            else None
        print(f"start+exit+remove of `true`, {args.rounds} alternating rounds (median, min)")
        for name, ts in times.items():
            rel = f"  {statistics.median(ts) / base:.2f}x docker" if base else ""
            print(f"  {name:<42} {statistics.median(ts) * 1000:7.0f} ms "
                  f"{min(ts) * 1000:7.0f} ms{rel}")
        for _ in range(args.ps):
            subprocess.run([KETCH, "create", "--network", "none", "busybox", "true"], env=env,
                           check=True, capture_output=True)
        ps = [timed([KETCH, "ps", "-a"], env) for _ in range(10)]
        helps = [timed([KETCH, "--help"], env) for _ in range(10)]
        print(f"  ketch ps -a with {args.ps} containers        "
              f"{statistics.median(ps) * 1000:7.0f} ms {min(ps) * 1000:7.0f} ms")
        print(f"  ketch --help                               "
              f"{statistics.median(helps) * 1000:7.0f} ms {min(helps) * 1000:7.0f} ms")
    finally:
        ids = subprocess.run([KETCH, "ps", "-aq", "--no-trunc"], env=env, capture_output=True,
                             text=True).stdout.split()
        for i in range(0, len(ids), 50):
            subprocess.run([KETCH, "rm", "-f", *ids[i:i + 50]], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
