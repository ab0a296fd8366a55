"""Micro-VM start time: `ketch-runv run` against `ketch-runc run`, same busybox bundle.

    .venv/bin/python bench/vm_start.py [-n 10] [--network]

Per round, alternating: the time from spawning `ketch-runv run` to the first
byte the guest's `echo` writes on stdout ("first output"), restored from the
shape's snapshot and (KETCH_VM_SNAPSHOT=0) booted cold, QEMU's CPU time
(user+sys) at that moment, the guest's own marks (seconds since its kernel
started: init running, modules loaded, agent ready; from the READY frame), the
wall time of a whole `ketch-runv run` of `true` (boot, run, teardown), the
same for `ketch-runc run`, and a baseline: bare QEMU, the same kernel and
machine, a busybox-only initramfs whose /init echoes to the serial console
(first output and CPU time). On a loaded host wall times mostly measure the
wait for a core; the CPU times and the ratio to the baseline, taken in the
same rounds, are what carry over. Needs root, QEMU, the guest kernel
(`ketch vm kernel --install`) and /bin/busybox.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO))

from ketch.oci.runtime_spec import default_spec  # noqa: E402


def make_bundle(top: Path, args: list[str], network: bool) -> Path:
    bundle = top / f"bundle-{args[0]}"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True)
    for name in applets.stdout.split():
        if name != "busybox":
            os.symlink("busybox", rootfs / "bin" / name)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir()
    # ketch's own default spec, so both runtimes get the bundle the engine would write.
    config = default_spec()
    config["process"].update(terminal=False, args=args)
    config["annotations"] = {} if network else {"ketch.vm.network": "none"}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def cpu_seconds(pid: int) -> float:
    """CPU time (user+sys) a process has used so far: what the boot costs, whatever the load."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_output(runv: list[str], bundle: Path, cid: str, res: dict | None = None,
                 cold: bool = False) -> float:
    boot0 = time.clock_gettime(time.CLOCK_BOOTTIME)
    t0 = time.perf_counter()
    env = {**os.environ, "KETCH_VM_SNAPSHOT": "0"} if cold else None
    proc = subprocess.Popen([*runv, "run", "--bundle", str(bundle), cid],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    proc.stdout.read(1)
    elapsed = time.perf_counter() - t0
    if res is not None:
        how = "cold boot" if cold else "restored"
        state = Path(runv[-1]) / cid
        pid = int((state / "qemu.pid").read_text())
        res[f"{how}: QEMU CPU seconds to that output"].append(cpu_seconds(pid))
        with open(f"/proc/{pid}/stat") as f:     # field 22: start time, ticks since boot
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        res[f"{how}: spawn to QEMU started (10 ms ticks)"].append(max(0.0, started - boot0))
        marks_file = state / "boot.times"    # absent from builds before the marks existed
        marks = dict(kv.split("=") for kv in marks_file.read_text().split()) if marks_file.exists() else {}
        if cold:
            for key, name in (("init", "cold boot, guest: init starts"),
                              ("modules", "cold boot, guest: modules loaded"),
                              ("ready", "cold boot, guest: agent ready")):
                if key in marks:
                    res[name].append(float(marks[key]))
        elif "config" in marks:   # guest time from receiving its config to READY
            res["restored, guest: config to ready"].append(
                float(marks["ready"]) - float(marks["config"]))
    proc.stdout.read()
    proc.wait()
    return elapsed


def baseline_initrd(top: Path) -> Path:
    """busybox alone, /init echoing one line: the least a booted kernel can do."""
    from ketch.vm.cpio import CpioWriter

    path = top / "baseline.cpio"
    with open(path, "wb") as f:
        w = CpioWriter(f)
        for d in ("dev", "bin", "proc"):
            w.directory(d)
        w.device("dev/console", True, 5, 1)    # init's stdout
        w.file("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
        w.file("init", b"#!/bin/busybox sh\n/bin/busybox echo x\n/bin/busybox poweroff -f\n", 0o755)
        w.close()
    return path


def baseline(initrd: Path) -> tuple[float, float]:
    """Bare QEMU, ketch's kernel and machine type, to the first console byte: (wall, CPU)."""
    from ketch.vm import kernel, qemu

    host, guest = socket.socketpair()
    args = [qemu.qemu_binary(), "-M", "microvm,x-option-roms=off,pit=off,pic=off",
            "-accel", "tcg", "-cpu", "max", "-m", "512M", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-kernel", str(kernel.require().vmlinux),
            "-initrd", str(initrd), "-append",
            f"console=ttyS0 quiet panic=-1 reboot=t tsc=reliable tsc_early_khz={qemu.host_tsc_khz()}",
            "-chardev", f"socket,id=con,fd={guest.fileno()}", "-serial", "chardev:con"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, pass_fds=[guest.fileno()], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    guest.close()
    host.recv(1)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid)
    host.close()
    qemu.kill_pid(proc.pid)
    proc.wait()
    return elapsed, cpu


def wall(cmd: list[str], env: dict | None = None) -> float | None:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env={**os.environ, **env} if env else None)
    if proc.returncode != 0:
        print(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace').strip()[-300:]}",
              file=sys.stderr)
        return None
    return time.perf_counter() - t0


def summary(name: str, runs: list[float]) -> str:
    return (f"| {name} | {statistics.median(runs):.3f} | {min(runs):.3f} | "
            f"{', '.join(f'{r:.2f}' for r in runs)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--network", action="store_true", help="with QEMU user networking")
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    for how in ("restored", "cold boot"):
        results[f"ketch-runv, {how}: first output of echo"] = []
        results[f"{how}: spawn to QEMU started (10 ms ticks)"] = []
        results[f"{how}: QEMU CPU seconds to that output"] = []
    for name in ("restored, guest: config to ready", "cold boot, guest: init starts",
                 "cold boot, guest: modules loaded", "cold boot, guest: agent ready",
                 "baseline (bare QEMU, busybox initramfs): first output",
                 "baseline: QEMU CPU seconds", "ketch-runv run true (restored)",
                 "ketch-runv run true (cold boot)"):
        results[name] = []
    runc_bin = BIN / "ketch-runc"
    with tempfile.TemporaryDirectory(prefix="ketch-bench-vm-") as tmp:
        top = Path(tmp)
        echo = make_bundle(top, ["echo", "x"], args.network)
        true = make_bundle(top, ["true"], args.network)
        runv = [str(BIN / "ketch-runv"), "--root", str(top / "runv")]
        base_initrd = baseline_initrd(top)
        first_output(runv, echo, "warm")       # builds the erofs image, initramfs, snapshot once
        if runc_bin.exists():
            results["ketch-runc run true"] = []
        load0 = os.getloadavg()[0]
        for i in range(args.n):
            results["ketch-runv, restored: first output of echo"].append(
                first_output(runv, echo, f"e{i}", results))
            results["ketch-runv, cold boot: first output of echo"].append(
                first_output(runv, echo, f"c{i}", results, cold=True))
            wall_s, cpu_s = baseline(base_initrd)
            results["baseline (bare QEMU, busybox initramfs): first output"].append(wall_s)
            results["baseline: QEMU CPU seconds"].append(cpu_s)
            results["ketch-runv run true (restored)"].append(
                wall([*runv, "run", "--bundle", str(true), f"t{i}"]))
            results["ketch-runv run true (cold boot)"].append(
                wall([*runv, "run", "--bundle", str(true), f"u{i}"], {"KETCH_VM_SNAPSHOT": "0"}))
            if runc_bin.exists():
                results["ketch-runc run true"].append(
                    wall([str(runc_bin), "--root", str(top / "runc"), "run", "--bundle",
                          str(true), f"c{i}"]))
        results = {k: [r for r in v if r is not None] for k, v in results.items()}
        load1 = os.getloadavg()[0]
    print(f"rounds {args.n}, network {'user' if args.network else 'none'}, "
          f"load average {load0:.1f} -> {load1:.1f}")
    print("| what | median (s) | best (s) | runs (s) |\n|---|---|---|---|")
    for name, runs in results.items():
        if runs:
            print(summary(name, runs))
    bare = statistics.median(results["baseline: QEMU CPU seconds"])
    for how in ("restored", "cold boot"):
        ours = statistics.median(results[f"{how}: QEMU CPU seconds to that output"])
        print(f"QEMU CPU to first output, ketch-runv {how} / baseline (medians): {ours / bare:.2f}")


if __name__ == "__main__":
    sys.exit(main())
