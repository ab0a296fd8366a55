"""Micro-VM start time: `ketch-runv run` against `ketch-runc run`, same busybox bundle.

    .venv/bin/python bench/vm_start.py [-n 10] [--network]

Per round, alternating: the time from spawning `ketch-runv run` to the first
byte the guest's `echo` writes on stdout ("first output"), the wall time of a
whole `ketch-runv run` of `true` (boot, run, teardown), and the same for
`ketch-runc run` when it is installed. Medians and all runs are printed with
the load average, since the machine is shared. Needs root, QEMU, the guest
kernel (`ketch vm kernel --install`) and /bin/busybox.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def qemu_cpu_seconds(state: Path) -> float:
    """CPU time QEMU has used so far: what the boot costs, whatever the load."""
    pid = int((state / "qemu.pid").read_text())
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_output(runv: list[str], bundle: Path, cid: str, cpu: list[float] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([*runv, "run", "--bundle", str(bundle), cid],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    proc.stdout.read(1)
    elapsed = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(qemu_cpu_seconds(Path(runv[-1]) / cid))
    proc.stdout.read()
    proc.wait()
    return elapsed


def wall(cmd: list[str]) -> float | None:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
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
    results: dict[str, list[float]] = {"ketch-runv: first output of echo": [],
                                       "QEMU CPU seconds to that output": [],
                                       "ketch-runv run true": []}
    runc_bin = BIN / "ketch-runc"
    with tempfile.TemporaryDirectory(prefix="ketch-bench-vm-") as tmp:
        top = Path(tmp)
        echo = make_bundle(top, ["echo", "x"], args.network)
        true = make_bundle(top, ["true"], args.network)
        runv = [str(BIN / "ketch-runv"), "--root", str(top / "runv")]
        first_output(runv, echo, "warm")       # builds the erofs image and initramfs once
        if runc_bin.exists():
            results["ketch-runc run true"] = []
        load0 = os.getloadavg()[0]
        for i in range(args.n):
            results["ketch-runv: first output of echo"].append(
                first_output(runv, echo, f"e{i}", results["QEMU CPU seconds to that output"]))
            results["ketch-runv run true"].append(wall([*runv, "run", "--bundle", str(true), f"t{i}"]))
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


if __name__ == "__main__":
    sys.exit(main())
