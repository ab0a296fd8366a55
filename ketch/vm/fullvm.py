"""Full VMs: an image turned into a bootable disk, booting the guest OS's own init.

The comparison point for micro-VMs. `build_disk` writes an image's root
filesystem into a sparse raw ext4 disk (mkfs.ext4 -d, no loop mount), adds
the guest kernel's modules, /etc/fstab and /etc/hostname, and -- when a
command is given -- a way for the OS's init to run it once and power off (a
systemd unit, or busybox init's inittab). QEMU runs a q35 PC with PCI virtio
devices, daemonized; the kernel is ketch's guest kernel and a tiny initramfs
stage mounts the disk and executes its /sbin/init.

    <root>/vms/<name>/vm.json    settings
    <root>/vms/<name>/disk.img   the VM's disk
    <root>/vms/<name>/console.log, console.sock, qmp.sock, qemu.pid
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ketch import paths
from ketch.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from ketch.vm import initramfs, qemu
from ketch.vm import kernel as kernel_mod

EXIT_MARKER = "ketch-exit="
MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_balloon"]


@dataclass
class VmSpec:
    name: str
    image: str = ""
    cpus: int = 1
    memory_mib: int = 1024
    disk_bytes: int = 4 << 30
    ports: list[str] = field(default_factory=list)   # QEMU hostfwd rules
    cmd: list[str] = field(default_factory=list)
    volumes: list[list] = field(default_factory=list)  # [host dir, guest dir, read-only]
    created: str = ""


def vms_dir() -> Path:
    return paths.root() / "vms"


def vm_dir(name: str, must_exist: bool = True) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise InvalidArgument(f"invalid VM name {name!r}")
    d = vms_dir() / name
    if must_exist and not (d / "vm.json").exists():
        raise NotFound(f"VM \"{name}\" not found")
    return d


def load(name: str) -> VmSpec:
    return VmSpec(**json.loads((vm_dir(name) / "vm.json").read_text()))


def names() -> list[str]:
    d = vms_dir()
    return sorted(p.parent.name for p in d.glob("*/vm.json")) if d.is_dir() else []


# --- the disk -------------------------------------------------------------------

def _guest_files(rootfs: Path, spec: VmSpec, kernel: kernel_mod.Kernel) -> None:
    """What turns a container image's tree into something an OS init can boot."""
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "hostname").write_text(spec.name + "\n")
    fstab = "LABEL=ketch-root / ext4 defaults 0 1\n"
    for i, (_src, dest, ro) in enumerate(spec.volumes):
        (rootfs / dest.lstrip("/")).mkdir(parents=True, exist_ok=True)
        fstab += f"ketchfs{i} {dest} virtiofs {'ro' if ro else 'defaults'} 0 0\n"
    (etc / "fstab").write_text(fstab)
    sysinit = "::sysinit:/bin/hostname -F /etc/hostname\n::sysinit:/bin/mount -a\n"
    if kernel.modules is not None:
        dest = rootfs / "lib" / "modules" / kernel.release
        if not dest.exists():
            shutil.copytree(kernel.modules, dest, symlinks=True)
    if not spec.cmd:
        if not (rootfs / "lib" / "systemd" / "systemd").exists():
            (etc / "inittab").write_text(sysinit + "ttyS0::respawn:-/bin/sh\n::shutdown:/bin/sync\n")
        return
    (etc / "ketch").mkdir(exist_ok=True)
    (etc / "ketch" / "cmd").write_text("#!/bin/sh\n" + shlex.join(spec.cmd) + "\n"
                                       f'echo "{EXIT_MARKER}$?" > /dev/console\n', )
    os.chmod(etc / "ketch" / "cmd", 0o755)
    if (rootfs / "lib" / "systemd" / "systemd").exists():
        unit = etc / "systemd" / "system"
        (unit / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
        (unit / "ketch-cmd.service").write_text(
            "[Unit]\nDescription=ketch command\nAfter=multi-user.target\n\n"
            "[Service]\nType=oneshot\nExecStart=/etc/ketch/cmd\nStandardOutput=tty\n"
            "StandardError=tty\nTTYPath=/dev/ttyS0\nExecStopPost=/bin/systemctl poweroff --no-block\n\n"
            "[Install]\nWantedBy=multi-user.target\n")
        link = unit / "multi-user.target.wants" / "ketch-cmd.service"
        if not link.is_symlink():
            link.symlink_to("../ketch-cmd.service")
    else:
        (etc / "inittab").write_text(sysinit + "ttyS0::once:/bin/sh -c '/etc/ketch/cmd; poweroff -f'\n"
                                     "::shutdown:/bin/sync\n")


def build_disk(rootfs: Path, spec: VmSpec, out: Path) -> None:
    """A sparse raw ext4 disk of spec.disk_bytes holding `rootfs` plus the guest files."""
    mkfs = shutil.which("mkfs.ext4")
    if mkfs is None:
        raise FailedPrecondition("mkfs.ext4 not found: install e2fsprogs")
    if not (rootfs / "sbin" / "init").exists() and not (rootfs / "sbin" / "init").is_symlink():
        # Container images usually ship no init (ketch's debian bootstrap is minbase).
        raise InvalidArgument(f"image {spec.image or str(rootfs)!r} has no /sbin/init to boot; "
                              "a full VM boots the image's own init: for Debian, "
                              "`ketch bootstrap debian:bookworm --include systemd-sysv`")
    kernel = kernel_mod.require()
    staging = out.parent / "staging"
    try:
        # cp -a, not shutil.copytree: device nodes (an mmdebstrap /dev) must be
        # recreated, not opened and read (reading /dev/console blocks forever),
        # and owners, hard links and xattrs must survive into the disk.
        proc = subprocess.run(["cp", "-a", "--", f"{rootfs}/.", str(staging)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            raise FailedPrecondition(f"copying the image's files for the disk: {last}")
        _guest_files(staging, spec, kernel)
        with open(out, "wb") as f:
            f.truncate(spec.disk_bytes)
        proc = subprocess.run([mkfs, "-q", "-F", "-L", "ketch-root", "-d", str(staging), str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            raise FailedPrecondition(f"mkfs.ext4 {out}: {last}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def create(spec: VmSpec, rootfs: Path) -> Path:
    d = vm_dir(spec.name, must_exist=False)
    vms_dir().mkdir(parents=True, exist_ok=True)
    try:
        d.mkdir()
    except FileExistsError:
        raise AlreadyExists(f"VM \"{spec.name}\" already exists") from None
    try:
        build_disk(rootfs, spec, d / "disk.img")
        spec.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (d / "vm.json").write_text(json.dumps(asdict(spec), indent=1))
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return d


# --- running ---------------------------------------------------------------------

def pid(name: str) -> int | None:
    """QEMU's pid while the VM runs (checked against its command line), else None."""
    d = vm_dir(name)
    try:
        value = int((d / "qemu.pid").read_text())
        with open(f"/proc/{value}/cmdline", "rb") as f:
            return value if str(d).encode() in f.read() else None
    except (OSError, ValueError):
        return None


def status(name: str) -> str:
    return "running" if pid(name) else "stopped"


def _argv(spec: VmSpec, d: Path, kernel: kernel_mod.Kernel, initrd: Path, accel: str) -> list[str]:
    cmdline = "console=ttyS0 panic=-1 quiet"
    khz = qemu.host_tsc_khz() if accel == "tcg" else None
    if khz:
        cmdline += f" tsc_early_khz={khz}"
    fwd = "".join(f",hostfwd={h}" for h in spec.ports)
    shares = []
    if spec.volumes:
        # vhost-user-fs maps guest RAM into virtiofsd: it must be a shared memfd.
        shares += ["-object", f"memory-backend-memfd,id=mem,size={spec.memory_mib}M,share=on",
                   "-machine", "memory-backend=mem"]
    for i in range(len(spec.volumes)):
        shares += ["-chardev", f"socket,id=fs{i},path={d / f'fs{i}.sock'}",
                   "-device", f"vhost-user-fs-pci,chardev=fs{i},tag=ketchfs{i}"]
    return [qemu.qemu_binary(), "-M", "q35", "-accel", accel, *shares,
            "-cpu", "host" if accel == "kvm" else "max", "-smp", str(spec.cpus),
            "-m", f"{spec.memory_mib}M", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", str(kernel.vmlinux), "-initrd", str(initrd), "-append", cmdline,
            "-drive", f"id=disk,file={d / 'disk.img'},format=raw,if=none",
            "-device", "virtio-blk-pci,drive=disk",
            "-netdev", f"user,id=net0{fwd}", "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-device", "virtio-balloon-pci,free-page-reporting=on",
            "-chardev", f"socket,id=con,path={d / 'console.sock'},server=on,wait=off,"
                        f"logfile={d / 'console.log'}",
            "-serial", "chardev:con", "-qmp", f"unix:{d / 'qmp.sock'},server=on,wait=off",
            "-daemonize", "-pidfile", str(d / "qemu.pid")]


def start(name: str) -> int:
    """Boot the VM in the background; returns QEMU's pid."""
    from ketch.vm import accel as accel_mod

    spec = load(name)
    d = vm_dir(name)
    if pid(name):
        raise Conflict(f"VM \"{name}\" is already running")
    kernel = kernel_mod.require()
    wanted = MODULES + (["virtiofs"] if spec.volumes else [])
    mods = [f"module /lib/modules/{p.name}" for p in kernel_mod.modules_in_order(kernel, wanted)]
    helpers = [_virtiofsd(d, i, src) for i, (src, _dest, _ro) in enumerate(spec.volumes)]
    (d / "helpers.pid").write_text(" ".join(str(h) for h in helpers))
    initrd = initramfs.write_run_initrd(kernel, mods + ["osroot /dev/vda"], d / "initrd")
    (d / "console.log").unlink(missing_ok=True)
    proc = subprocess.run(_argv(spec, d, kernel, initrd, accel_mod.choose(kernel)),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    initrd.unlink(missing_ok=True)
    if proc.returncode != 0:
        for helper in helpers:
            qemu.kill_pid(helper)
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise FailedPrecondition(f"start VM \"{name}\": {last}")
    return int((d / "qemu.pid").read_text())


def _virtiofsd(d: Path, index: int, source: str) -> int:
    """A virtiofsd for one volume, outliving this command like the daemonized QEMU."""
    if not Path(source).is_dir():
        raise NotFound(f"volume source {source!r}: no such directory")
    sock = d / f"fs{index}.sock"
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen([qemu.virtiofsd_binary(), f"--socket-path={sock}", "-o",
                             f"source={source}", "-o", "cache=auto"], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(d / f"virtiofsd{index}.log", "wb"))
    deadline = time.monotonic() + 5
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise FailedPrecondition(f"virtiofsd for {source!r} did not start")
        time.sleep(0.005)
    return proc.pid


def _kill_helpers(d: Path) -> None:
    try:
        pids = [int(p) for p in (d / "helpers.pid").read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(d).encode() in f.read():
                    qemu.kill_pid(pid)
        except OSError:
            pass


def stop(name: str, timeout: float = 10.0) -> None:
    """ACPI power button through QMP; killed (by pid) if still up after `timeout`."""
    found = pid(name)
    if not found:
        return
    try:
        _qmp_powerdown(vm_dir(name) / "qmp.sock")
    except Exception:  # QMP unreachable: the kill below still stops it
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid(name):
        time.sleep(0.1)
    if pid(name):
        qemu.kill_pid(found)
    _kill_helpers(vm_dir(name))


def _qmp_powerdown(sock: Path) -> None:
    import asyncio

    from qemu.qmp import QMPClient

    async def powerdown():
        client = QMPClient("ketch")
        await asyncio.wait_for(client.connect(str(sock)), 5)
        try:
            await client.execute("system_powerdown")
        finally:
            await client.disconnect()
    asyncio.run(powerdown())


def remove(name: str, force: bool = False) -> None:
    if pid(name):
        if not force:
            raise Conflict(f"cannot remove running VM \"{name}\": stop it first or use --force")
        qemu.kill_pid(pid(name))
    _kill_helpers(vm_dir(name))
    shutil.rmtree(vm_dir(name))


def exit_code(name: str) -> int | None:
    """The command's exit status, from the marker its wrapper printed on the console."""
    try:
        text = (vm_dir(name) / "console.log").read_text(errors="replace")
    except OSError:
        return None
    at = text.rfind(EXIT_MARKER)
    if at < 0:
        return None
    digits = "".join(c for c in text[at + len(EXIT_MARKER):at + len(EXIT_MARKER) + 4] if c.isdigit())
    return int(digits) if digits else None
