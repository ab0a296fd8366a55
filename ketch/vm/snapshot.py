"""Boot once, restore per run: QEMU snapshots of a guest waiting for its config.

Under TCG most of a micro-VM's start is the guest kernel booting and loading
modules, the same work for every run of the same shape. So a run whose shape
has no snapshot yet boots a *template*: its initramfs config says `template`,
and the guest init loads the modules, opens the agent's port, sends TEMPLATE
and waits. The shim saves the machine there (QMP `migrate` to a file, the VM
left running), resumes it, and sends the run's files and config over the port
(FILE, CONFIG frames); boot goes on as usual from mounting the root. Later runs
of that shape start QEMU with `-incoming` on the saved file instead of
booting, and send their config the same way.

The key is QEMU's version plus its whole command line for the shape, per-run
paths left out: kernel (path, size, mtime), template initramfs (modules, agent build), kernel
command line (with the TSC rate), vCPUs, RAM, devices (network or not,
balloon or not), TCG options. What differs per run is handled after restore:
  - the root disk is attached by path, per run; every erofs image is padded
    (sparse) to rootfs.DISK_BYTES so the capacity the guest probed stays true,
    and the guest drops the disk's page cache before mounting it;
  - the guest's wall clock is set from the host's (`clock` line) and fresh host
    randomness is credited and the CRNG reseeded (`entropy` line), so two runs
    from one snapshot share no random state;
  - published ports are QEMU netdev options, not guest state.
Cold boots remain for: volumes (vhost-user-fs devices cannot be migrated),
KVM (fast to boot anyway; its snapshots are not exercised on this host),
images larger than DISK_BYTES, and KETCH_VM_SNAPSHOT=0. Snapshots live in
<cache>/snapshots/<key>.{vm,initrd}, a few kept, least recently used removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

from ketch.errors import FailedPrecondition
from ketch.vm import initramfs, qemu, rootfs
from ketch.vm import kernel as kernel_mod

#: Snapshots kept (each is the guest RAM the template touched, ~60-80 MiB).
KEEP = 8
SAVE_TIMEOUT = 60.0


def enabled(accel_name: str) -> bool:
    return accel_name == "tcg" and os.environ.get("KETCH_VM_SNAPSHOT", "1") not in ("0", "off")


def directory() -> Path:
    return kernel_mod.cache_dir() / "snapshots"


def _key(kernel: kernel_mod.Kernel, base: Path, shape: dict) -> str:
    from ketch.vm import accel
    cfg = qemu.VmConfig(vmlinux=kernel.vmlinux, initrd=Path("-"), console_log=Path("-"),
                        agent_fd=0, accel=shape["accel"], cpus=shape["cpus"],
                        memory_mib=shape["memory_mib"], root_image=Path("-"),
                        hostfwd=[] if shape["net"] else None, qmp_socket=Path("-"),
                        balloon=shape["balloon"])
    st = kernel.vmlinux.stat()     # a kernel rebuilt in place (KETCH_VM_KERNEL) keeps its path
    h = hashlib.sha256(json.dumps([accel.qemu_version(), qemu.argv(cfg), base.name,
                                   rootfs.DISK_BYTES, st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()[:24]


def prepare(kernel: kernel_mod.Kernel, shape: dict, lines: list[str], image: Path,
            files: list[tuple[str, str]]) -> dict | None:
    """The launch's "snapshot" entry for a run of this shape, or None to boot cold.
    `lines` is the run's guest config, `files` (guest name, host path) what it copies."""
    if not enabled(shape["accel"]) or shape["shares"] or image.stat().st_size != rootfs.DISK_BYTES:
        return None
    modules = [ln for ln in lines if ln.startswith("module ")]
    template = modules + ["template"] + (["net"] if "net" in lines else [])
    base = initramfs.base(kernel, tuple(ln.rsplit("/", 1)[-1] for ln in modules),
                          busybox="net" in lines)
    key = _key(kernel, base, shape)
    d = directory()
    initrd = d / f"{key}.initrd"
    if not initrd.exists():
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.initrd.{os.getpid()}"
        initramfs.write_run_initrd(kernel, template, tmp)
        os.replace(tmp, initrd)
    state = d / f"{key}.vm"
    if state.exists():
        os.utime(state)   # recently used
    return {"state": str(state), "initrd": str(initrd), "files": files,
            "config": [ln for ln in lines if not ln.startswith("module ")]}


class _Qmp:
    """Just enough QMP for a save: commands in order, events skipped, fds passed along."""

    def __init__(self, path: Path, timeout: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.file.readline()     # greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str, fds: list[int] = (), **arguments) -> dict:
        data = json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n"
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)
        while True:
            line = self.file.readline()
            if not line:
                raise FailedPrecondition(f"QMP {command}: QEMU closed the connection")
            msg = json.loads(line)
            if "error" in msg:
                raise FailedPrecondition(f"QMP {command}: {msg['error'].get('desc')}")
            if "return" in msg:
                return msg["return"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def save(qmp_socket: Path, dest: Path, timeout: float = SAVE_TIMEOUT) -> None:
    """Save the running VM's state to `dest` and let it run on. QEMU writes to an
    fd we pass it, so the file is complete once the migration reports so."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    q = _Qmp(qmp_socket, timeout)
    try:
        q.execute("getfd", fds=[fd], fdname="snapshot")
        os.close(fd)
        fd = -1
        q.execute("migrate", uri="fd:snapshot")
        deadline = time.monotonic() + timeout
        while (status := q.execute("query-migrate").get("status")) != "completed":
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise FailedPrecondition(f"saving the micro-VM snapshot: migration {status}")
            time.sleep(0.01)
        os.replace(tmp, dest)
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        try:
            q.execute("cont")     # the source stops when the migration ends (or fails)
        finally:
            q.close()
    _prune(dest.parent)


def _prune(d: Path) -> None:
    states = sorted(d.glob("*.vm"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in states[KEEP:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".initrd").unlink(missing_ok=True)
    # Half-written saves of shims killed meanwhile (a live save takes seconds).
    for tmp in d.glob(".*.vm.*"):
        try:
            if tmp.stat().st_mtime < time.time() - 600:
                tmp.unlink()
        except FileNotFoundError:
            pass
