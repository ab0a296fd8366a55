"""CPU and I/O throughput inside an instance, in one start per round.

A VM start costs seconds (tens under TCG), so each round starts ONE
instance (with the volume mounted) and runs the CPU workload and then the
I/O workload on every target in it. Each round is preceded by a native run
of the same CPU workload, so a drift in host load hits both sides of the
ratio alike. Everything is timed inside by /proc/uptime, start-up excluded.
"""

from __future__ import annotations

from pathlib import Path

from ketch.bench import workloads
from ketch.bench.results import Result, from_samples, missing
from ketch.bench.runtimes import Runtime
from ketch.bench.stats import summarize
from ketch.bench.workloads import one_line


def round_script(nbytes: int, targets: dict[str, str], mb: int) -> list[str]:
    """CPU work, then I/O on each target (tagged by its index); all in one shell."""
    parts = [workloads.cpu_fragment(nbytes)]
    parts += [workloads.io_fragment(d, mb, str(i)) for i, d in enumerate(targets.values())]
    return ["sh", "-c", "; ".join(parts)]


def native_cpu(busybox: Path, nbytes: int) -> float | None:
    t = workloads.run_timed([str(busybox), *workloads.cpu_script(nbytes)], timeout=300)
    return workloads.parse_elapsed(t.stdout)


def measure(rt: Runtime, rounds: int, nbytes: int, mb: int, volume: Path,
            busybox: Path) -> list[Result]:
    secs: list[float] = []
    native: list[float] = []
    io: dict[str, list[tuple[float, float]]] = {t: [] for t in rt.io_targets}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        n = native_cpu(busybox, nbytes)
        if n is not None:
            native.append(n)
        t = rt.run_fg(round_script(nbytes, rt.io_targets, mb), volume=volume,
                      timeout=rt.start_timeout + 900)
        out = t.stdout + t.stderr
        s = workloads.parse_elapsed(t.stdout)
        if s is None or s <= 0:
            errors.setdefault("cpu", f"runs failed: {one_line(t.stderr or t.stdout)}")
        else:
            secs.append(s)
        for i, target in enumerate(rt.io_targets):
            try:
                io[target].append(workloads.parse_io(out, mb, str(i)))
            except ValueError as exc:
                errors.setdefault(target, str(exc))
    return [_cpu_result(rt, secs, native, nbytes, errors.get("cpu")),
            *_io_results(rt, io, mb, errors)]


def _cpu_result(rt: Runtime, secs: list[float], native: list[float], nbytes: int,
                error: str | None) -> Result:
    if not secs or not native:
        return missing(rt.key, "cpu", error or "the native baseline run failed")
    native_med = summarize(native).median
    pct = [100.0 * native_med / s for s in secs]
    how = (f"busybox sha256sum of {nbytes / 1e6:.0f} MB of zeros, the same busybox-static "
           f"binary on the host and inside; timed inside by /proc/uptime (10 ms ticks) "
           f"around the work, so start-up is excluded; each run divides the native median "
           f"({native_med:.2f} s) by the instance's time (median {summarize(secs).median:.2f}"
           f" s); {len(secs)} runs, each after a native run")
    return from_samples(rt.key, "cpu", pct, how, seconds=secs, native_seconds=native)


def _io_results(rt: Runtime, io: dict, mb: int, errors: dict[str, str]) -> list[Result]:
    out = []
    for target, directory in rt.io_targets.items():
        pairs = io[target]
        if not pairs:
            why = errors.get(target, "no run succeeded")
            out += [missing(rt.key, m, why, target) for m in ("io_write", "io_read")]
            continue
        how = (f"busybox dd bs=1M count={mb} in {directory} ({target}): write with "
               f"conv=fsync, then read back {workloads.READ_PASSES} times with the page cache "
               f"warm (dropping caches would change host state); timed inside by /proc/uptime "
               f"(10 ms ticks); {len(pairs)} runs")
        for metric, values in (("io_write", [w for w, _ in pairs]),
                               ("io_read", [r for _, r in pairs])):
            r = from_samples(rt.key, metric, values, how)
            r.target = target
            out.append(r)
    return out

