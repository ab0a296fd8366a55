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
from ketch.bench.stats import fmt_bytes, summarize
from ketch.bench.workloads import one_line

#: Seconds to wait for an HTTP answer (a TCG full VM answers within ~40 s here).
HTTP_TIMEOUT = 120.0


def start_trivial(rt: Runtime, runs: int) -> list[Result]:
    samples, errors = [], []
    for _ in range(runs):
        if len(errors) >= 2 and not samples:
            break  # the runtime fails every time: say why instead of waiting more
        t = rt.run_fg(workloads.TRIVIAL, timeout=rt.start_timeout)
        # The line saying "ready", not the first byte: a full VM's console
        # prints firmware and kernel text before the command runs.
        ready = next((at for at, line in t.line_times if "ready" in line), None)
        if ready is not None:
            samples.append(ready)
        else:
            errors.append(one_line(t.stderr or t.stdout))
    if not samples:
        return [missing(rt.key, "start_trivial", f"runs failed: {errors[0]}")]
    rt.typical_start = summarize(samples).median
    cold = (f" (the warm-up, with cold caches, took {rt.cold_start:.2f} s)"
            if rt.cold_start is not None else "")
    verb = ("`vm create NAME IMAGE echo ready` + `vm start --attach` (disk build "
            f"{min(rt.create_seconds):.1f}-{max(rt.create_seconds):.1f} s of it)"
            if rt.create_seconds else "`run --rm IMAGE echo ready`")
    how = (f"{verb} through the {rt.label} command line; time from spawning the command "
           f"to the line 'ready' on its stdout; {len(samples)} runs after 1 untimed "
           f"warm-up{cold}")
    return [from_samples(rt.key, "start_trivial", samples, how, failed=len(errors),
                         cold_start=rt.cold_start)]


def start_http(rt: Runtime, runs: int) -> list[Result]:
    samples, errors = [], []
    bind, published = rt.http_bind()
    # Three times the runtime's own start time is ample for httpd to answer too.
    wait = HTTP_TIMEOUT if rt.typical_start is None else \
        min(HTTP_TIMEOUT, max(20.0, 3 * rt.typical_start))
    for _ in range(runs):
        if errors and not samples:
            break  # no answer the first time: another wait of HTTP_TIMEOUT tells nothing new
        port = workloads.free_port()
        t0 = time.monotonic()
        inst = None
        try:
            inst = rt.start(workloads.http_script(port, bind, rt.http_prefix), http_port=port)
            ready = workloads.wait_http("127.0.0.1", port, t0, wait)
            if ready is None:
                bound = "" if rt.typical_start is None else " (3x its start time, >= 20 s)"
                errors.append(f"no HTTP answer on 127.0.0.1:{port} within {wait:.0f} s{bound}")
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
    how = (f"{rt.start_verb} busybox httpd ({net}); time from spawning the command until "
           f"GET / answers on 127.0.0.1, polled every 10 ms; {len(samples)} runs"
           + (f"; the guest first runs `{rt.http_prefix.strip(' ;')}`" if rt.http_prefix
              else ""))
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
        started.append(rt.start(cmd))
        wait_ready(rt, started[0], rt.start_timeout)
        if app == "idle":
            out.append(storage(rt, started, baseline, image))
        # The others start together: VMs boot in parallel, as they would in use.
        started += [rt.start(cmd) for _ in range(count - 1)]
        for inst in started[1:]:
            wait_ready(rt, inst, rt.start_timeout)
        if app == "idle" and count == 3:
            out.append(storage(rt, started, baseline, image))
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
        how = (f"{count} instance(s) running at once; PSS = sum of Pss in "
               f"/proc/PID/smaps_rollup over each instance's host processes (its cgroup's "
               f"cgroup.procs, its monitor and helpers{', QEMU' if rt.kind == 'vm' else ''}; "
               f"{min(nprocs)}-{max(nprocs)} processes); median per instance. MemAvailable "
               f"drop (whole host, noisy: other work moves it): {fmt_bytes(drop)} per "
               f"instance")
        out.append(from_samples(rt.key, metric, per, how, memavailable_drop_per_instance=drop,
                                processes=nprocs, instances=count))
        return out
    finally:
        for inst in started:
            rt.remove(inst)


def storage(rt: Runtime, instances: list[Instance], baseline: probes.DiskUse,
            image: probes.DiskUse) -> Result:
    """Allocated bytes of the runtime's roots (+ files a VM's QEMU holds open), image included."""
    n = len(instances)
    outside: list[Path] = []
    if rt.kind == "vm":
        roots = [str(r) for r in rt.storage_roots()]
        for inst in instances:
            outside += [f for f in probes.open_files(rt.pids(inst))
                        if not any(str(f).startswith(r) for r in roots)]
    use = probes.disk_use(rt.storage_roots(), files=outside)
    allocated = use.allocated - baseline.allocated
    apparent = use.apparent - baseline.apparent
    sparse = (f"apparent size {fmt_bytes(apparent)} vs {fmt_bytes(allocated)} "
              f"allocated: sparse/thin files present" if use.sparse
              else "no significant sparse/thin files (apparent ~ allocated)")
    shared = (f"; plus files QEMU boots from or holds open outside them (guest kernel, "
              f"initramfs, disk images; shared ones once): "
              f"{', '.join(sorted({str(f) for f in outside}))}"
              if outside else "")
    how = (f"allocated blocks (st_blocks*512, hard links once, not crossing mounts) under "
           f"{rt.label}'s private storage roots with {n} instance(s) running, image included "
           f"(image alone: {fmt_bytes(image.allocated - baseline.allocated)}){shared}; "
           f"{sparse}")
    return Result(rt.key, f"storage_{n}", value=float(allocated), unit="bytes", how=how,
                  extra={"apparent": apparent, "image_allocated":
                         image.allocated - baseline.allocated, "sparse": use.sparse,
                         "outside_files": sorted({str(f) for f in outside})})


def density(rt_key: str, mem: Result | None, budget: int) -> Result:
    if mem is None or not mem.ok or not mem.value:
        return missing(rt_key, "density", "no per-instance memory figure to extrapolate from")
    n = int(budget // mem.value)
    how = (f"EXTRAPOLATED, not run: {fmt_bytes(budget)} budget (host MemAvailable at "
           f"start unless --budget) / {fmt_bytes(mem.value)} PSS per idle instance")
    return Result(rt_key, "density", value=float(n), unit="instances", how=how,
                  extra={"budget": budget, "per_instance": mem.value, "extrapolated": True})
