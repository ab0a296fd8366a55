"""One function per measurement, each taking a runtime adapter.

Each function returns Result records (with a value, or with the reason it
has none) and removes every instance it started before returning, in a
`finally`, whatever happened. The `how` of each record is the sentence a
report prints beside the figure.
"""

from __future__ import annotations

import time
from pathlib import Path

from ketch.bench import probes, workloads
from ketch.bench.results import Result, from_samples, missing
from ketch.bench.runtimes import Instance, NotAvailable, Runtime
from ketch.bench.stats import summarize
from ketch.bench.workloads import one_line


def start_trivial(rt: Runtime, runs: int) -> list[Result]:
    samples, errors = [], []
    for _ in range(runs):
        t = rt.run_fg(workloads.TRIVIAL, timeout=rt.start_timeout)
        if t.first_output is not None and "ready" in t.stdout:
            samples.append(t.first_output)
        else:
            errors.append(one_line(t.stderr or t.stdout))
    if not samples:
        return [missing(rt.key, "start_trivial", f"runs failed: {errors[0]}")]
    how = (f"`run --rm IMAGE echo ready` through the {rt.label} command line; time from "
           f"spawning the command to the first byte on its stdout; {len(samples)} runs "
           f"after 1 untimed warm-up")
    return [from_samples(rt.key, "start_trivial", samples, how, failed=len(errors))]


def start_http(rt: Runtime, runs: int) -> list[Result]:
    samples, errors = [], []
    bind, published = rt.http_bind()
    for _ in range(runs):
        port = workloads.free_port()
        t0 = time.monotonic()
        inst = None
        try:
            inst = rt.start(workloads.http_script(port, bind), http_port=port)
            ready = workloads.wait_http("127.0.0.1", port, t0, rt.start_timeout)
            if ready is None:
                errors.append(f"no HTTP answer within {rt.start_timeout:.0f} s")
            else:
                samples.append(ready)
        except NotAvailable as exc:
            errors.append(str(exc))
        finally:
            if inst is not None:
                rt.remove(inst)
    if not samples:
        return [missing(rt.key, "start_http", f"runs failed: {errors[0]}")]
    net = ("port published on 127.0.0.1" if published
           else "host network, httpd bound to 127.0.0.1")
    how = (f"`run -d` busybox httpd ({net}); time from spawning the command until "
           f"GET / answers on 127.0.0.1, polled every 10 ms; {len(samples)} runs")
    return [from_samples(rt.key, "start_http", samples, how, failed=len(errors))]


def wait_ready(rt: Runtime, inst: Instance, timeout: float) -> None:
    """Until the instance printed 'ready' (its app is resident), or NotAvailable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ready" in rt.logs(inst):
            return
        time.sleep(0.2)
    raise NotAvailable(f"instance {inst.name} printed no 'ready' within {timeout:.0f} s")


def memory_and_storage(rt: Runtime, count: int, app: str, baseline: probes.DiskUse,
                       image: probes.DiskUse) -> list[Result]:
    """Start `count` instances of app ('idle' or '100m'); PSS, MemAvailable, disk."""
    cmd = (["sh", "-c", "echo ready; exec sleep 86400"] if app == "idle"
           else workloads.TOUCH_100M)
    metric = "mem_idle" if app == "idle" else "mem_100m"
    out: list[Result] = []
    started: list[Instance] = []
    time.sleep(0.5)
    avail0 = probes.mem_available()
    try:
        for i in range(count):
            inst = rt.start(cmd)
            started.append(inst)
            wait_ready(rt, inst, rt.start_timeout)
            if app == "idle" and i + 1 in (1, 3):
                out.append(storage(rt, i + 1, baseline, image))
        time.sleep(1.0)  # let page faults and guest boot work settle
        avail1 = probes.mem_available()
        per, nprocs = [], []
        for inst in started:
            pss, counted = probes.total_pss(rt.pids(inst))
            if counted:
                per.append(float(pss))
                nprocs.append(counted)
        if not per:
            return [*out, missing(rt.key, metric, "no host process found for the instances")]
        drop = (avail0 - avail1) / count
        how = (f"{count} instances running at once; PSS = sum of Pss in /proc/PID/smaps_rollup "
               f"over each instance's host processes (its cgroup's cgroup.procs, its monitor "
               f"and helpers{', QEMU' if rt.kind == 'vm' else ''}; {min(nprocs)}-{max(nprocs)} "
               f"processes); median per instance. MemAvailable drop (whole host, noisier): "
               f"{drop / 2**20:.1f} MiB per instance")
        out.append(from_samples(rt.key, metric, per, how, memavailable_drop_per_instance=drop,
                                processes=nprocs, instances=count))
        return out
    finally:
        for inst in started:
            rt.remove(inst)


def storage(rt: Runtime, n: int, baseline: probes.DiskUse,
            image: probes.DiskUse) -> Result:
    use = probes.disk_use(rt.storage_roots())
    allocated = use.allocated - baseline.allocated
    apparent = use.apparent - baseline.apparent
    sparse = (f"apparent size {apparent / 2**20:.1f} MiB vs {allocated / 2**20:.1f} MiB "
              f"allocated: sparse/thin files present" if use.sparse
              else "no significant sparse/thin files (apparent ~ allocated)")
    how = (f"allocated blocks (st_blocks*512, hard links once, not crossing mounts) under "
           f"{rt.label}'s private storage roots with {n} instance(s) running, image included "
           f"(image alone: {(image.allocated - baseline.allocated) / 2**20:.1f} MiB); {sparse}")
    return Result(rt.key, f"storage_{n}", value=float(allocated), unit="bytes", how=how,
                  extra={"apparent": apparent, "image_allocated":
                         image.allocated - baseline.allocated, "sparse": use.sparse})


def _native_once(busybox: Path, nbytes: int) -> float | None:
    t = workloads.run_timed([str(busybox), *workloads.cpu_script(nbytes)], timeout=300)
    return workloads.parse_elapsed(t.stdout)


def cpu(rt: Runtime, runs: int, nbytes: int, busybox: Path) -> list[Result]:
    """Runtime runs interleaved with native runs, so host load drifts hit both alike."""
    secs, native, errors = [], [], []
    for _ in range(runs):
        n = _native_once(busybox, nbytes)
        if n is not None:
            native.append(n)
        t = rt.run_fg(workloads.cpu_script(nbytes), timeout=rt.start_timeout + 600)
        s = workloads.parse_elapsed(t.stdout)
        if s is None or s <= 0:
            errors.append(one_line(t.stderr or t.stdout))
        else:
            secs.append(s)
    if not secs or not native:
        why = errors[0] if errors else "the native baseline run failed"
        return [missing(rt.key, "cpu", f"runs failed: {why}")]
    native_med = summarize(native).median
    pct = [100.0 * native_med / s for s in secs]
    how = (f"busybox sha256sum of {nbytes / 1e6:.0f} MB of zeros, the same busybox-static "
           f"binary on the host and inside; timed inside by /proc/uptime (10 ms ticks) "
           f"around the work, so start-up is excluded; each run divides the native median "
           f"({native_med:.2f} s) by the instance's time (median {summarize(secs).median:.2f}"
           f" s); {len(secs)} runs interleaved with {len(native)} native runs")
    return [from_samples(rt.key, "cpu", pct, how, seconds=secs, native_seconds=native)]


def io(rt: Runtime, mb: int, volume: Path) -> list[Result]:
    out: list[Result] = []
    for target, directory in rt.io_targets.items():
        use_volume = volume if target == "volume" else None
        try:
            t = rt.run_fg(workloads.io_script(directory, mb), timeout=rt.start_timeout + 300,
                          volume=use_volume)
            write, read = workloads.parse_io(t.stdout + t.stderr, mb)
        except (ValueError, NotAvailable) as exc:
            out += [missing(rt.key, m, str(exc), target) for m in ("io_write", "io_read")]
            continue
        how = (f"busybox dd bs=1M count={mb} in {directory} ({target}): write with "
               f"conv=fsync, then read back {workloads.READ_PASSES} times with the page cache warm (dropping caches would "
               f"change host state); timed inside by /proc/uptime (10 ms ticks)")
        out.append(Result(rt.key, "io_write", value=write, unit="MB/s", how=how, target=target,
                          samples=[write]))
        out.append(Result(rt.key, "io_read", value=read, unit="MB/s", how=how, target=target,
                          samples=[read]))
    return out


def density(rt_key: str, mem: Result | None, budget: int) -> Result:
    if mem is None or not mem.ok or not mem.value:
        return missing(rt_key, "density", "no per-instance memory figure to extrapolate from")
    n = int(budget // mem.value)
    how = (f"EXTRAPOLATED, not run: {budget / 2**30:.1f} GiB budget (host MemAvailable at "
           f"start unless --budget) / {mem.value / 2**20:.1f} MiB PSS per idle instance")
    return Result(rt_key, "density", value=float(n), unit="instances", how=how,
                  extra={"budget": budget, "per_instance": mem.value, "extrapolated": True})
