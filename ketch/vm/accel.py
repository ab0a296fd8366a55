"""Which accelerator a micro-VM uses: KVM when it really works, else TCG.

/dev/kvm existing proves little: on some nested hosts it opens, trivial
guests even run, yet a Linux guest hangs at boot. So the probe boots the real
guest kernel and initramfs to the agent's first frame under a short deadline,
kills that QEMU by PID if it does not make it, and caches the verdict per
kernel and QEMU version in <cache>/accel.json. KETCH_VM_ACCEL=kvm|tcg forces one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ketch.vm import initramfs, qemu
from ketch.vm import kernel as kernel_mod

PROBE_DEADLINE = 4.0
_version_cache: str | None = None


def qemu_version() -> str:
    """QEMU's version line, cached next to the verdicts by binary size and mtime
    (running `qemu --version` costs tens of milliseconds on every start)."""
    global _version_cache
    if _version_cache is None:
        binary = qemu.qemu_binary()
        st = os.stat(binary)
        stamp = f"{binary}:{st.st_size}:{int(st.st_mtime)}"
        known = _load().get("qemu", {})
        if known.get("stamp") == stamp:
            _version_cache = known["version"]
        else:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True)
            _version_cache = (out.stdout.splitlines() or ["unknown"])[0]
            _store("qemu", {"stamp": stamp, "version": _version_cache})
    return _version_cache


def _cache_file() -> Path:
    return kernel_mod.cache_dir() / "accel.json"


def _load() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _store(key: str, verdict: dict) -> None:
    data = _load()
    data[key] = verdict
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def probe_kvm(kernel: kernel_mod.Kernel, deadline: float = PROBE_DEADLINE) -> tuple[bool, str]:
    """Boot the guest under KVM to its agent; (works, reason)."""
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return False, f"/dev/kvm: {exc.strerror}"
    host, guest = socket.socketpair()
    with tempfile.TemporaryDirectory(prefix="ketch-kvm-probe-") as tmp:
        initrd = initramfs.write_run_initrd(
            kernel, [f"module {m}" for m in initramfs.modules_for(kernel, set())] + ["probe"],
            Path(tmp) / "initrd")
        cfg = qemu.VmConfig(vmlinux=kernel.vmlinux, initrd=initrd, accel="kvm",
                            console_log=Path(tmp) / "console.log", agent_fd=guest.fileno(),
                            memory_mib=256, balloon=False)
        proc = subprocess.Popen(qemu.argv(cfg), pass_fds=[guest.fileno()],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        guest.close()
        start = time.monotonic()
        try:
            host.settimeout(deadline)
            got = host.recv(8)
            if got:
                return True, f"guest booted in {time.monotonic() - start:.2f}s"
            try:
                proc.wait(timeout=1)
                err = proc.stderr.read(4096).decode(errors="replace").strip()
            except subprocess.TimeoutExpired:
                err = ""
            first = err.splitlines()[0].removeprefix("qemu-system-x86_64: ") if err else "no output"
            return False, f"QEMU failed under KVM: {first}"
        except TimeoutError:
            return False, f"guest did not boot within {deadline:.0f}s"
        finally:
            host.close()
            qemu.kill_pid(proc.pid)
            proc.wait()
            proc.stderr.close()


def choose(kernel: kernel_mod.Kernel, notice=None) -> str:
    """'kvm' or 'tcg' for this kernel and QEMU; probes once, then uses the cache."""
    forced = os.environ.get("KETCH_VM_ACCEL", "auto")
    if forced in ("kvm", "tcg"):
        return forced
    key = f"{kernel.release}|{kernel.vmlinux}|{qemu_version()}"
    verdict = _load().get(key)
    if verdict is None:
        works, reason = probe_kvm(kernel)
        verdict = {"accel": "kvm" if works else "tcg", "reason": reason, "at": int(time.time())}
        _store(key, verdict)
        if not works:
            (notice or _stderr)(f"KVM is not usable ({reason}); micro-VMs use TCG emulation")
    return verdict["accel"]


def _stderr(msg: str) -> None:
    print(f"ketch-runv: {msg}", file=sys.stderr)


def describe() -> dict:
    """What `ketch info` shows: the accelerator micro-VMs use here, and why."""
    try:
        kernel = kernel_mod.current()
    except Exception as exc:  # a broken KETCH_VM_KERNEL must not break `ketch info`
        return {"accelerator": "unknown", "reason": str(exc)}
    if kernel is None:
        return {"accelerator": "unknown", "reason": f"no guest kernel: run `{kernel_mod.INSTALL_HINT}`",
                "kernel": None}
    forced = os.environ.get("KETCH_VM_ACCEL", "auto")
    info = {"kernel": kernel.release, "qemu": qemu_version() if qemu.qemu_binary() else None}
    if forced in ("kvm", "tcg"):
        return {**info, "accelerator": forced, "reason": "KETCH_VM_ACCEL"}
    verdict = _load().get(f"{kernel.release}|{kernel.vmlinux}|{qemu_version()}")
    if verdict is None:
        return {**info, "accelerator": "not probed yet",
                "reason": "decided at the first micro-VM start"}
    return {**info, "accelerator": verdict["accel"], "reason": verdict["reason"]}
