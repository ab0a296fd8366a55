"""The guest's initramfs: built once per kernel and agent, plus a tiny per-run part.

The base archive holds the guest init/agent (guest/*.c, compiled static with
the host's gcc), the kernel modules the run loads and, for user networking
only, busybox-static. It is cached under <cache>/initramfs/<key>.cpio, one per
module set, the key covering the kernel release, the modules, the agent's
sources and busybox, so nothing is rebuilt per run. Each
run appends a second newc archive carrying /ketch/config (what to load, mount
and configure); the kernel unpacks concatenated archives in order.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ketch.errors import FailedPrecondition
from ketch.vm import kernel as kernel_mod
from ketch.vm.cpio import CpioWriter, archive

GUEST_SRC = Path(__file__).with_name("guest")
BUSYBOX = "/bin/busybox"
#: Always loaded: the devices and filesystems every micro-VM uses.
BASE_MODULES = ["virtio_mmio", "virtio_blk", "virtio_console", "erofs", "overlay"]
#: Loaded only when used.
OPTIONAL_MODULES = {"net": ["virtio_net"], "virtiofs": ["virtiofs"],
                    "balloon": ["virtio_balloon"], "pci": ["virtio_pci"]}


_SIG_MAGIC = b"~Module signature appended~\n"


def strip_signature(module: bytes) -> bytes:
    """The module without its appended signature. Checking Debian's RSA module
    signatures under TCG costs boot time; the kernel does not enforce them
    (CONFIG_MODULE_SIG_FORCE is off), so it loads the module and marks itself
    tainted instead."""
    if not module.endswith(_SIG_MAGIC):
        return module
    # struct module_signature (12 bytes) precedes the magic; sig_len is its last field.
    info = module[-len(_SIG_MAGIC) - 12:-len(_SIG_MAGIC)]
    sig_len = int.from_bytes(info[8:12], "big")
    return module[:-len(_SIG_MAGIC) - 12 - sig_len]


STRIP_SIGNATURES = os.environ.get("KETCH_VM_STRIP_MODULE_SIGNATURES", "1") != "0"


def _sources() -> list[Path]:
    return sorted(GUEST_SRC.glob("*.[ch]"))


def _key(kernel: kernel_mod.Kernel, modules: tuple[str, ...], busybox: bool) -> str:
    h = hashlib.sha256(kernel.release.encode() + str(kernel.vmlinux).encode())
    h.update(repr((modules, busybox, STRIP_SIGNATURES)).encode())
    for src in _sources():
        h.update(src.name.encode() + src.read_bytes())
    if busybox:
        st = os.stat(BUSYBOX)
        h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def compile_agent(out: Path) -> None:
    """Build the static guest init/agent from guest/*.c."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise FailedPrecondition("building the guest agent needs gcc (apt-get install gcc)")
    srcs = [str(p) for p in _sources() if p.suffix == ".c"]
    proc = subprocess.run([cc, "-static", "-Os", "-s", "-Wall", "-o", str(out), *srcs],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["failed"])[0]
        raise FailedPrecondition(f"compile guest agent: {first}")


#: Cached bases kept: one per module set in use (plain, +net, +volumes, full VM, ...).
KEEP_BUILDS = 12


def base(kernel: kernel_mod.Kernel, modules: tuple[str, ...] | None = None,
         busybox: bool = True) -> Path:
    """Path of the cached base initramfs holding exactly `modules` (file names,
    None: every module a micro-VM may use) and busybox if asked, building it if
    missing. Under TCG the guest kernel unpacks the archive before init runs, at
    a cost that grows with its size: busybox (2 MiB, only `ip` for user
    networking is used) and the optional modules (1.2 MiB) made the archive
    4.4 MiB where a plain run needs 1.0."""
    if modules is None:
        wanted = BASE_MODULES + [m for mods in OPTIONAL_MODULES.values() for m in mods]
        modules = tuple(p.name for p in kernel_mod.modules_in_order(kernel, wanted))
    out = kernel_mod.cache_dir() / "initramfs" / f"{_key(kernel, modules, busybox)}.cpio"
    if out.exists():
        return out
    if busybox and not os.path.exists(BUSYBOX):
        raise FailedPrecondition(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    out.parent.mkdir(parents=True, exist_ok=True)
    by_name = {p.name: p for p in kernel_mod.modules_in_order(
        kernel, [m.removesuffix(".ko") for m in modules])}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        agent = Path(tmp) / "init"
        compile_agent(agent)
        part = Path(tmp) / "base.cpio"
        with open(part, "wb") as f:
            w = CpioWriter(f)
            for d in ("dev", "proc", "sys", "mnt", "bin", "ketch", "lib", "lib/modules"):
                w.directory(d)
            # The kernel opens /dev/console for init before anything is mounted.
            w.device("dev/console", True, 5, 1)
            w.file("init", agent.read_bytes(), 0o755)
            if busybox:
                w.file("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
                w.symlink("bin/sh", "busybox")
            for name in modules:
                if name in by_name:
                    data = by_name[name].read_bytes()
                    w.file(f"lib/modules/{name}", strip_signature(data) if STRIP_SIGNATURES else data)
            w.close()
        os.replace(part, out)
    # Older builds (another agent or kernel) are dead weight; a few stay for running VMs' sake.
    builds = sorted(out.parent.glob("*.cpio"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[KEEP_BUILDS:]:
        old.unlink(missing_ok=True)
    return out


def modules_for(kernel: kernel_mod.Kernel, features: set[str]) -> list[str]:
    """Guest paths of the modules to load, in dependency order, for these features."""
    wanted = list(BASE_MODULES)
    for feature in sorted(features):
        wanted += OPTIONAL_MODULES.get(feature, [])
    return [f"/lib/modules/{p.name}" for p in kernel_mod.modules_in_order(kernel, wanted)]


def run_config(lines: list[str], files: list[tuple[str, bytes]] = ()) -> bytes:
    """The per-run archive: /ketch/config, one setting per line, and copied files."""
    entries = [("dir", "ketch/files")] + [("file", name.lstrip("/"), data) for name, data in files]
    entries.append(("file", "ketch/config", ("\n".join(lines) + "\n").encode()))
    return archive(entries)


def write_run_initrd(kernel: kernel_mod.Kernel, lines: list[str], dest: Path,
                     files: list[tuple[str, bytes]] = ()) -> Path:
    """base initramfs + the per-run archive, concatenated at a 4-byte boundary.
    The base holds only the modules `lines` loads, and busybox only for `net`."""
    modules = tuple(ln.rsplit("/", 1)[-1] for ln in lines if ln.startswith("module "))
    src = base(kernel, modules, busybox="net" in lines)
    shutil.copyfile(src, dest)
    with open(dest, "ab") as f:
        size = f.tell()
        if size % 4:
            f.write(b"\0" * (4 - size % 4))
        f.write(run_config(lines, files))
    return dest
