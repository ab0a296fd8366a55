"""Container start through Docker and Podman: ketch-runc against runc, alternating.

    .venv/bin/python bench/interop_start.py [-n 12] [--engines docker,podman]

For each engine that is installed, a private instance (the one the interop
tests use: tests/integration/interop/engines.py; own dirs, no host config,
vfs, --network none) loads ketch's busybox image; then each round times the
whole CLI call `<engine> run --rm --network none busybox true` once with
ketch-runc and once with runc (order alternating), after one warm-up each.
Printed: median and min wall per runtime and the ratio, and the time each
OCI runtime's own processes took per container, in total and per call the
engine makes (create, start, delete, ...; median of 5 more runs through a
timing wrapper). Needs root, and docker.io and/or podman.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.interop import engines  # noqa: E402

KETCH_RUNC = str(REPO / ".venv/bin/ketch-runc")
TOOLS = {"docker": ("dockerd", "docker", "containerd"), "podman": ("podman", "conmon")}


def argv(engine: engines.Engine, runtime: str) -> list[str]:
    """The full `run --rm ... busybox true` command line with `runtime` ("ketch" or "runc")."""
    if engine.name == "docker":
        return [*engine.cli, *engine.run_args(runtime), "--rm", "busybox", "true"]
    path = KETCH_RUNC if runtime == "ketch" else shutil.which("runc") or "runc"
    return [*engine.with_runtime(path), *engine.run_args(), "--rm", "busybox", "true"]


def once(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


VERBS = ("create", "start", "state", "kill", "delete", "exec", "ps", "features", "--version")


def timing_wrappers(top: Path) -> dict[str, tuple[Path, Path]]:
    """Per runtime, a wrapper that logs each call's duration (ns) and arguments."""
    found = {}
    for rt, exe in (("ketch", KETCH_RUNC), ("runc", shutil.which("runc") or "runc")):
        log, wrapper = top / f"{rt}-calls.log", top / f"{rt}-timed"
        wrapper.write_text("#!/bin/sh\n"
                           f's=$(date +%s%N); {exe} "$@"; rc=$?\n'
                           f'echo "$(( $(date +%s%N) - s )) $*" >> {log}\nexit $rc\n')
        wrapper.chmod(0o755)
        found[rt] = (wrapper, log)
    return found


def _calls(log: Path) -> dict[str, float]:
    """Seconds per runtime verb in one container's log (`delete --force` kept apart)."""
    calls: dict[str, float] = {}
    for line in log.read_text().splitlines():
        ns, *args = line.split()
        verb = next((a for a in args if a in VERBS), "other")
        if verb == "delete" and "--force" in args:
            verb = "delete --force"
        calls[verb] = calls.get(verb, 0.0) + int(ns) / 1e9
    return calls


def runtime_share(engine: engines.Engine, rt: str, wrapper: Path, log: Path,
                  runs: int = 5) -> dict[str, float]:
    """Median time per container inside the runtime's own processes, in total and per verb."""
    per_run = []
    for _ in range(runs):
        log.write_text("")
        if engine.name == "docker":
            # dockerd knows the wrapper as runtime "<rt>-timed" (added at start).
            cmd = [*engine.cli, *engine.run_args(f"{rt}-timed"), "--rm", "busybox", "true"]
        else:
            cmd = [*engine.with_runtime(str(wrapper)), *engine.run_args(), "--rm", "busybox",
                   "true"]
        once(cmd, engine.env)
        per_run.append(_calls(log))
    verbs = {v for run in per_run for v in run}
    share = {v: statistics.median(run.get(v, 0.0) for run in per_run) for v in sorted(verbs)}
    share["total"] = statistics.median(sum(run.values()) for run in per_run)
    return share


def bench_engine(name: str, image: Path, rounds: int, top: Path) -> dict | None:
    missing = engines.missing_tools(*TOOLS[name])
    if missing:
        print(f"{name}: skipped ({', '.join(missing)} not installed)")
        return None
    cls = engines.PrivateDocker if name == "docker" else engines.PrivatePodman
    eng = cls(KETCH_RUNC, f"ketch/bench-interop-{os.getpid()}")
    wrappers = timing_wrappers(top)
    eng.extra_runtimes.update({f"{rt}-timed": str(w) for rt, (w, _log) in wrappers.items()})
    times: dict[str, list[float]] = {"ketch": [], "runc": []}
    try:
        eng.start()
        eng.load(image)
        for rt in times:
            once(argv(eng, rt), eng.env)  # warm-up: page cache, first-use setup
        for i in range(rounds):
            order = ["ketch", "runc"] if i % 2 == 0 else ["runc", "ketch"]
            for rt in order:
                times[rt].append(once(argv(eng, rt), eng.env))
        share = {rt: runtime_share(eng, rt, *w) for rt, w in wrappers.items()}
    finally:
        eng.stop()
        left = eng.leftovers()
        eng.purge()
        if left:
            print(f"{name} left behind (cleaned): {'; '.join(left)}", file=sys.stderr)
    return {"times": times, "share": share}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=12, help="rounds (each runtime once per round)")
    ap.add_argument("--engines", default="docker,podman")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("interop_start: needs root")
    top = Path(tempfile.mkdtemp(prefix="ketch-bench-interop-"))
    try:
        image = engines.busybox_tar(str(REPO / ".venv/bin/ketch"), top)
        print(f"load average {os.getloadavg()[0]:.1f}; {args.n} rounds, alternating")
        print("| engine | ketch-runc median | runc median | ratio | ketch-runc min | runc min"
              " | in ketch-runc | in runc |")
        print("|---|---|---|---|---|---|---|---|")
        shares = {}
        for name in args.engines.split(","):
            res = bench_engine(name, image, args.n, top)
            if not res:
                continue
            k, r = res["times"]["ketch"], res["times"]["runc"]
            km, rm = statistics.median(k), statistics.median(r)
            shares[name] = res["share"]
            print(f"| {name} | {km * 1e3:.0f} ms | {rm * 1e3:.0f} ms | {km / rm:.2f}x"
                  f" | {min(k) * 1e3:.0f} ms | {min(r) * 1e3:.0f} ms"
                  f" | {res['share']['ketch']['total'] * 1e3:.0f} ms"
                  f" | {res['share']['runc']['total'] * 1e3:.0f} ms |")
        print("\nper call, median ms per container (ketch-runc / runc):")
        for name, share in shares.items():
            verbs = [v for v in share["ketch"] if v != "total"]
            print(f"  {name}: " + ", ".join(
                f"{v} {share['ketch'][v] * 1e3:.0f}/{share['runc'].get(v, 0) * 1e3:.0f}"
                for v in verbs))
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
