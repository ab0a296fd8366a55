"""`ketch run --rm busybox true` against docker and podman (when installed), alternating.

    sudo .venv/bin/python bench/run_compare.py [--rounds 10] [--ps 100]
        [--compare NAME=PATH ...] [--no-docker] [--no-podman]

Each round runs every contender once, in turn, so load changes hit all of
them alike; the medians are reported with docker's as the unit when docker
is present. `--compare before=/tmp/base/ketch` adds a `--network none` row
for another build of ketch (an executable taking ketch's command line, e.g.
a shell script running an unpacked older tree with PYTHONPATH), in the same
rounds; `ketch-runc-cli` is always there: KETCH_OCI_RUNTIME names
ketch-runc's absolute path, so every runtime call is a command again. Also timed: `ketch ps -a` with --ps created containers, and
`ketch --help`. Everything runs in a scratch KETCH_ROOT that is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ketch.bench.probes import remove_cgroup_tree

KETCH = str(Path(sys.executable).parent / "ketch")


FAILURES: dict[str, str] = {}


def timed(argv: list[str], env: dict, name: str = "") -> float | None:
    """Wall time of one command; a failure is noted (and reported) instead of timed."""
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        FAILURES[name or argv[0]] = proc.stderr.decode().strip()[-300:]
        return None
    return dt


ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
IMAGE = "ketch-bench-busybox:1"
# `busybox true`: the images of every contender have /bin/busybox (not all have /bin/true).
CMD = ["busybox", "true"]


def podman(tmp: Path) -> list[str] | None:
    """A private podman store (own root/runroot), runc, cgroupfs; None if not installed."""
    if not shutil.which("podman"):
        return None
    base = ["podman", "--root", str(tmp / "podman"), "--runroot", str(tmp / "podman-run"),
            "--cgroup-manager", "cgroupfs", "--runtime", shutil.which("runc") or "runc",
            "--storage-driver", "overlay", "--events-backend", "none"]
    tar = _busybox_tar(tmp)
    subprocess.run([*base, "import", str(tar), IMAGE], check=True, capture_output=True)
    return base


def _busybox_tar(tmp: Path) -> Path:
    root = tmp / "bbroot"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "true"):
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    tar = tmp / "busybox.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
    return tar


def contenders(env: dict, docker, pod: list[str] | None,
               builds: dict[str, str]) -> dict[str, tuple[list[str], dict]]:
    """Everything with --network none (no firewall changes), plus the bridge rows."""
    none = ["run", "--rm", "--network", "none"]
    out = {"ketch run --rm --network none": ([KETCH, *none, "busybox", *CMD], env)}
    runc_cli = str(Path(sys.executable).parent / "ketch-runc")
    out["ketch (ketch-runc-cli) --network none"] = (
        [KETCH, *none, "busybox", *CMD], {**env, "KETCH_OCI_RUNTIME": runc_cli})
    for name, path in builds.items():
        out[f"ketch [{name}] --network none"] = ([path, *none, "busybox", *CMD], env)
    if shutil.which("runc"):
        out["ketch (runc) run --rm --network none"] = (
            [KETCH, *none, "busybox", *CMD], {**env, "KETCH_OCI_RUNTIME": shutil.which("runc")})
    if docker is not None:
        out["docker run --rm --network none"] = (
            ["docker", "-H", f"unix://{docker.sock}", *none, IMAGE, *CMD], dict(os.environ))
    if pod is not None:
        out["podman run --rm --network none"] = (
            [*pod, *none, *ULIMITS, "--cgroup-parent", "/ketch/bench-podman", IMAGE, *CMD],
            dict(os.environ))
    out["ketch run --rm (bridge)"] = ([KETCH, "run", "--rm", "busybox", *CMD], env)
    if docker is not None:
        out["docker run --rm (bridge)"] = (
            ["docker", "-H", f"unix://{docker.sock}", "run", "--rm", IMAGE, *CMD],
            dict(os.environ))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--ps", type=int, default=100)
    ap.add_argument("--no-docker", action="store_true", help="Skip the private dockerd.")
    ap.add_argument("--no-podman", action="store_true", help="Skip podman.")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=PATH",
                    help="Also time another ketch build (an executable) with --network none.")
    args = ap.parse_args()
    builds = dict(c.split("=", 1) for c in args.compare)
    tmp = Path(tempfile.mkdtemp(prefix="ketch-runbench-"))
    env = {**os.environ, "KETCH_ROOT": str(tmp / "root"), "KETCH_RUNROOT": str(tmp / "run"),
           "KETCH_CGROUP_PARENT": f"ketch/bench-{os.getpid()}"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)   # a user's ketch has its bytecode cached
    stack = contextlib.ExitStack()
    try:
        subprocess.run([KETCH, "bootstrap", "busybox", "-q"], env=env, check=True,
                       capture_output=True)
        docker = None
        if not args.no_docker:
            sys.path.insert(0, str(Path(__file__).parent))
            import net_docker
            if net_docker.available():
                docker = stack.enter_context(net_docker.dockerd())
        pod = None if args.no_podman else podman(tmp)
        runs = contenders(env, docker, pod, builds)
        times: dict[str, list[float]] = {k: [] for k in runs}
        load0 = f"{os.getloadavg()[0]:.1f}"
        for name, (argv, e) in runs.items():   # warm-up (page cache, bytecode)
            timed(argv, e, name)
        for _ in range(args.rounds):
            for name, (argv, e) in runs.items():
                dt = timed(argv, e, name)
                if dt is not None:
                    times[name].append(dt)
        key = "docker run --rm --network none"
        base = statistics.median(times[key]) if times.get(key) else None
        print(f"start+exit+remove of `true`, {args.rounds} alternating rounds (median, min); "
              f"{time.strftime('%Y-%m-%d %H:%M')}, load average {load0} -> "
              f"{os.getloadavg()[0]:.1f}")
        for name, ts in times.items():
            if not ts:
                print(f"  {name:<44} failed: {FAILURES.get(name, '?')}")
                continue
            rel = f"  {statistics.median(ts) / base:.2f}x docker" if base else ""
            print(f"  {name:<44} {statistics.median(ts) * 1000:7.0f} ms "
                  f"{min(ts) * 1000:7.0f} ms{rel}")
        for _ in range(args.ps):
            subprocess.run([KETCH, "create", "--network", "none", "busybox", *CMD], env=env,
                           check=True, capture_output=True)
        ps = [t for _ in range(10) if (t := timed([KETCH, "ps", "-a"], env)) is not None]
        helps = [t for _ in range(10) if (t := timed([KETCH, "--help"], env)) is not None]
        for name, msg in FAILURES.items():
            print(f"  note: {name} failed at least once: {msg}")
        print(f"  ketch ps -a with {args.ps} containers        "
              f"{statistics.median(ps) * 1000:7.0f} ms {min(ps) * 1000:7.0f} ms")
        print(f"  ketch --help                               "
              f"{statistics.median(helps) * 1000:7.0f} ms {min(helps) * 1000:7.0f} ms")
    finally:
        stack.close()
        ids = subprocess.run([KETCH, "ps", "-aq", "--no-trunc"], env=env, capture_output=True,
                             text=True).stdout.split()
        for i in range(0, len(ids), 50):
            subprocess.run([KETCH, "rm", "-f", *ids[i:i + 50]], env=env, capture_output=True)
        subprocess.run(["umount", "-R", "-l", str(tmp / "podman")], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        remove_cgroup_tree(env["KETCH_CGROUP_PARENT"])
        remove_cgroup_tree("ketch/bench-podman")


if __name__ == "__main__":
    main()
