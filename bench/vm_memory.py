"""Host memory of an idle micro-VM, and how much of it is guest RAM.

    .venv/bin/python bench/vm_memory.py [--settle 5] [--fill-mib 128]

Boots `sleep` in a busybox micro-VM (no network), lets it settle, then reads
/proc/<pid>/smaps of QEMU and of the shim: PSS of each process, and the RSS
of QEMU's guest-RAM mapping (the anonymous mapping the size of the guest's
memory) -- what the guest kernel has touched. QEMU's own overhead is its PSS
minus that. Then the guest fills and frees `--fill-mib` of tmpfs, and the
guest-RAM RSS is read again after a wait: with virtio-balloon free page
reporting the freed pages go back to the host. Runs with the balloon and
without (KETCH_VM_BALLOON=0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.vm_start import BIN, make_bundle  # noqa: E402

MEMORY_MIB = 512


def classify(pid: int) -> dict[str, int]:
    """PSS (KiB) of a process by kind of mapping: guest RAM (the anonymous mapping the
    size of the guest's memory), TCG's translated-code buffer (anonymous rwx), the
    kernel image QEMU keeps mapped (page cache, shared by every VM), and the rest."""
    out = {"guest RAM": 0, "TCG code buffer": 0, "kernel image": 0, "rest": 0}
    kind = "rest"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                size_kib = (int(head[0].split("-")[1], 16) - int(head[0].split("-")[0], 16)) >> 10
                anon = len(head) < 6
                if anon and size_kib == MEMORY_MIB * 1024:
                    kind = "guest RAM"
                elif anon and head[1] == "rwxp":
                    kind = "TCG code buffer"
                elif not anon and head[5].endswith("vmlinux"):
                    kind = "kernel image"
                else:
                    kind = "rest"
            elif head and head[0] == "Pss:":
                out[kind] += int(head[1])
    return out


def smaps(pid: int) -> tuple[int, int]:
    """(PSS of the process, PSS of its guest-RAM mapping), in KiB."""
    parts = classify(pid)
    return sum(parts.values()), parts["guest RAM"]


def measure(top: Path, balloon: bool, settle: float, fill_mib: int) -> dict:
    env = {**os.environ, "KETCH_VM_BALLOON": "1" if balloon else "0"}
    bundle = make_bundle(top / f"b{int(balloon)}", ["sleep", "100000"], False)
    runv = [str(BIN / "ketch-runv"), "--root", str(top / "runv")]
    cid = f"mem{int(balloon)}"
    subprocess.run([*runv, "create", "--bundle", str(bundle), cid], check=True, env=env,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        subprocess.run([*runv, "start", cid], check=True)
        state = top / "runv" / cid
        qemu_pid = int((state / "qemu.pid").read_text())
        shim_pid = json.loads((state / "state.json").read_text())["pid"]
        time.sleep(settle)
        qemu_pss, ram_idle = smaps(qemu_pid)
        parts = classify(qemu_pid)
        shim_pss, _ = smaps(shim_pid)
        subprocess.run([*runv, "exec", cid, "sh", "-c",
                        f"dd if=/dev/zero of=/dev/shm/fill bs=1M count={fill_mib} 2>/dev/null"],
                       check=True)
        _, ram_filled = smaps(qemu_pid)
        subprocess.run([*runv, "exec", cid, "rm", "/dev/shm/fill"], check=True)
        time.sleep(settle)
        _, ram_freed = smaps(qemu_pid)
    finally:
        subprocess.run([*runv, "delete", "--force", cid])
    mib = 1024
    return {"balloon": balloon, "qemu_pss": qemu_pss / mib, "shim_pss": shim_pss / mib,
            "guest_ram_touched": ram_idle / mib, "qemu_overhead": (qemu_pss - ram_idle) / mib,
            "after_fill": ram_filled / mib, "after_free": ram_freed / mib,
            "parts": {k: v / mib for k, v in parts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--fill-mib", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ketch-bench-vmmem-") as tmp:
        rows = [measure(Path(tmp), b, args.settle, args.fill_mib) for b in (True, False)]
    print(f"guest RAM {MEMORY_MIB} MiB, fill {args.fill_mib} MiB, settle {args.settle:g} s, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| balloon | QEMU PSS | shim PSS | guest RAM touched (idle) | QEMU overhead "
          "| guest RAM after fill | after free |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'free page reporting' if r['balloon'] else 'none'} | {r['qemu_pss']:.1f} "
              f"| {r['shim_pss']:.1f} | {r['guest_ram_touched']:.1f} | {r['qemu_overhead']:.1f} "
              f"| {r['after_fill']:.1f} | {r['after_free']:.1f} |")
    print("(MiB)")
    print("QEMU PSS by mapping, idle, with the balloon: " +
          ", ".join(f"{k} {v:.1f}" for k, v in rows[0]["parts"].items()))


if __name__ == "__main__":
    sys.exit(main())
