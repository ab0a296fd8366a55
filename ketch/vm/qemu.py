"""QEMU for a micro-VM: the command line, the process, and its console.

The machine is QEMU's `microvm` tuned for start time: no option ROMs, no
legacy PIT/PIC, the kernel's PVH entry (vmlinux, not the bzImage), ACPI kept
on (without it no virtio-mmio devices are found), modern virtio-mmio only.
Devices: the agent's virtio-serial port on a socketpair (no socket file, no
race with the guest), the rootfs erofs image on virtio-blk, virtiofs shares,
optional user networking, and a balloon with free page reporting so memory
the guest frees goes back to the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import FailedPrecondition

QEMU = "qemu-system-x86_64"
VIRTIOFSD_PATHS = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd")
KERNEL_ARGS = ("console=ttyS0 quiet panic=-1 cryptomgr.notests reboot=t mitigations=off "
               "tsc=reliable")


def qemu_binary() -> str:
    found = shutil.which(QEMU)
    if not found:
        raise FailedPrecondition(f"{QEMU} not found: install qemu-system-x86 (apt-get install qemu-system-x86)")
    return found


def virtiofsd_binary() -> str:
    for path in VIRTIOFSD_PATHS:
        if os.access(path, os.X_OK):
            return path
    raise FailedPrecondition("virtiofsd not found (needed for volumes): install qemu-system-x86")


def host_tsc_khz() -> int | None:
    """The host's TSC rate; a TCG guest told it skips a calibration that can hang."""
    try:
        with open("/sys/devices/system/cpu/cpu0/tsc_freq_khz") as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None


@dataclass
class VmConfig:
    vmlinux: Path
    initrd: Path
    console_log: Path
    agent_fd: int
    accel: str = "tcg"
    cpus: int = 1
    memory_mib: int = 512
    root_image: Path | None = None
    shares: list[tuple[str, Path]] = field(default_factory=list)  # (tag, virtiofsd socket)
    hostfwd: list[str] | None = None   # None: no network; []: network, nothing published
    qmp_socket: Path | None = None
    balloon: bool = True
    extra_args: str = ""
    incoming_fd: int | None = None   # restore the snapshot (snapshot.py) read from this fd


def argv(cfg: VmConfig) -> list[str]:
    """The QEMU command line for `cfg`."""
    cmdline = KERNEL_ARGS
    if cfg.accel == "tcg":
        khz = host_tsc_khz()
        if khz:
            cmdline += f" tsc_early_khz={khz}"
    if cfg.extra_args:
        cmdline += " " + cfg.extra_args
    mem = f"{cfg.memory_mib}M"
    accel = cfg.accel
    tb_size = os.environ.get("KETCH_VM_TCG_TB_SIZE", "")
    if accel == "tcg" and tb_size:
        # MiB of translated code QEMU keeps before flushing it all. Unset: QEMU's
        # default (reserved, only used pages count; ~40 MiB by an idle guest).
        if not tb_size.isdigit() or int(tb_size) == 0:
            raise FailedPrecondition(f"KETCH_VM_TCG_TB_SIZE={tb_size!r}: not a size in MiB")
        accel += f",tb-size={tb_size}"
    args = [qemu_binary(), "-M", "microvm,x-option-roms=off,pit=off,pic=off",
            "-accel", accel, "-cpu", "host" if cfg.accel == "kvm" else "max",
            "-smp", str(cfg.cpus), "-m", mem,
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", str(cfg.vmlinux), "-initrd", str(cfg.initrd), "-append", cmdline,
            "-chardev", f"file,id=con,path={cfg.console_log}", "-serial", "chardev:con",
            "-global", "virtio-mmio.force-legacy=false",
            "-device", "virtio-serial-device,max_ports=2",
            "-chardev", f"socket,id=agent,fd={cfg.agent_fd}",
            "-device", "virtserialport,chardev=agent,name=ketch.0"]
    if cfg.shares:
        # vhost-user needs guest RAM the daemon can map: a shared memfd.
        args += ["-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
                 "-machine", "memory-backend=mem"]
    if cfg.root_image is not None:
        args += ["-drive", f"id=root,file={cfg.root_image},format=raw,if=none,readonly=on",
                 "-device", "virtio-blk-device,drive=root"]
    for i, (tag, sock) in enumerate(cfg.shares):
        args += ["-chardev", f"socket,id=fs{i},path={sock}",
                 "-device", f"vhost-user-fs-device,chardev=fs{i},tag={tag}"]
    if cfg.hostfwd is not None:
        fwd = "".join(f",hostfwd={h}" for h in cfg.hostfwd)
        args += ["-netdev", f"user,id=net0{fwd}", "-device", "virtio-net-device,netdev=net0"]
    if cfg.balloon:
        args += ["-device", "virtio-balloon-device,free-page-reporting=on"]
    if cfg.qmp_socket is not None:
        args += ["-qmp", f"unix:{cfg.qmp_socket},server=on,wait=off"]
    if cfg.incoming_fd is not None:
        # The saved state replaces the freshly built machine's; the VM runs as
        # soon as it is loaded (it was saved running).
        args += ["-incoming", f"fd:{cfg.incoming_fd}"]
    return args


def console_tail(path: Path, lines: int = 8) -> str:
    """The last console lines, for an error message about a failed boot."""
    try:
        text = path.read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return ""
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


def kill_pid(pid: int, timeout: float = 2.0) -> None:
    """SIGKILL one process we started, and reap it if it is our child."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except OSError:
                return
        time.sleep(0.01)
