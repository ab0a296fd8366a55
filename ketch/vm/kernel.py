"""The guest kernel: where it is cached, how it is installed, what it contains.

ketch boots Debian's cloud kernel (linux-image-cloud-amd64). `install()` fetches
the meta package and the versioned image package it depends on with
`apt-get download`, unpacks them with dpkg-deb, and keeps:

    <cache>/kernel/<release>/vmlinuz        the bzImage as shipped
    <cache>/kernel/<release>/vmlinux        its uncompressed ELF payload (PVH entry)
    <cache>/kernel/<release>/config
    <cache>/kernel/<release>/modules/...    lib/modules/<release> of the package
    <cache>/kernel/current                  the release in use (one line)

The cache is shared by all roots (default /var/cache/ketch/vm, KETCH_VM_CACHE
moves it) so tests and users download the kernel once. KETCH_VM_KERNEL points
at a user-supplied kernel (bzImage or vmlinux) instead; it is booted as is and
only its own built-in drivers are available unless KETCH_VM_MODULES names its
lib/modules/<release> directory.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ketch.errors import FailedPrecondition, Unavailable

PACKAGE = "linux-image-cloud-amd64"
INSTALL_HINT = "ketch vm kernel --install"
_LZ4_LEGACY = 0x184C2102


def cache_dir() -> Path:
    return Path(os.environ.get("KETCH_VM_CACHE") or "/var/cache/ketch/vm")


@dataclass(frozen=True)
class Kernel:
    release: str           # e.g. 6.1.0-56-cloud-amd64, or "custom"
    vmlinux: Path          # what QEMU boots
    modules: Path | None   # lib/modules/<release>, or None for a built-in-only kernel

    def module_path(self, name: str) -> Path | None:
        """Path of module `name` (dashes and underscores alike), or None if built in/absent."""
        if self.modules is None:
            return None
        return _module_index(self.modules).get(name.replace("-", "_"))


_INDEX: dict[Path, dict[str, Path]] = {}


def _module_index(root: Path) -> dict[str, Path]:
    if root not in _INDEX:
        _INDEX[root] = {p.name.removesuffix(".ko").replace("-", "_"): p
                        for p in root.rglob("*.ko")}
    return _INDEX[root]


def module_depends(path: Path) -> list[str]:
    """The `depends=` list from a module's .modinfo section (what modules.dep is made of)."""
    data = path.read_bytes()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + 9:data.index(b"\0", at + 9)].decode()
    return [d for d in value.split(",") if d]


def modules_in_order(kernel: Kernel, wanted: list[str]) -> list[Path]:
    """`wanted` and their dependencies, each after what it depends on (modules.dep order)."""
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        path = kernel.module_path(name)
        if path is None:
            return  # built into the kernel (or not there: the guest reports what fails)
        for dep in module_depends(path):
            visit(dep)
        order.append(path)

    for name in wanted:
        visit(name)
    return order


def current() -> Kernel | None:
    """The kernel to boot, or None when none is installed."""
    custom = os.environ.get("KETCH_VM_KERNEL")
    if custom:
        path = Path(custom)
        if not path.is_file():
            raise FailedPrecondition(f"guest kernel {custom!r} (KETCH_VM_KERNEL): no such file")
        mods = os.environ.get("KETCH_VM_MODULES")
        return Kernel("custom", _ensure_vmlinux(path), Path(mods) if mods else None)
    marker = cache_dir() / "kernel" / "current"
    try:
        release = marker.read_text().strip()
    except FileNotFoundError:
        return None
    base = cache_dir() / "kernel" / release
    if not (base / "vmlinux").is_file():
        return None
    return Kernel(release, base / "vmlinux", base / "modules")


def require() -> Kernel:
    """The kernel to boot; none installed -> one line saying how to install it."""
    found = current()
    if found is None:
        raise FailedPrecondition(f"no guest kernel installed in {cache_dir()}: run `{INSTALL_HINT}`")
    return found


def install(log=lambda msg: None) -> Kernel:
    """Fetch Debian's cloud kernel with apt-get download and unpack it into the cache."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FailedPrecondition("installing the guest kernel needs apt-get and dpkg-deb")
    root = cache_dir() / "kernel"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".install-") as tmp:
        work = Path(tmp)
        meta = _download(PACKAGE, work, log)
        depends = _run(["dpkg-deb", "-f", str(meta), "Depends"]).strip()
        image_pkg = depends.split(",")[0].split()[0]
        deb = _download(image_pkg, work, log)
        unpacked = work / "x"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        vmlinuz = next((unpacked / "boot").glob("vmlinuz-*"))
        release = vmlinuz.name.removeprefix("vmlinuz-")
        dest = root / release
        if not (dest / "vmlinux").is_file():
            stage = work / "stage"
            stage.mkdir()
            shutil.move(str(vmlinuz), stage / "vmlinuz")
            shutil.move(str(unpacked / "boot" / f"config-{release}"), stage / "config")
            shutil.move(str(unpacked / "lib" / "modules" / release), stage / "modules")
            (stage / "vmlinux").write_bytes(extract_vmlinux((stage / "vmlinuz").read_bytes()))
            shutil.rmtree(dest, ignore_errors=True)
            os.rename(stage, dest)
        tmp_marker = root / ".current.tmp"
        tmp_marker.write_text(release + "\n")
        os.rename(tmp_marker, root / "current")
    log(f"guest kernel {release} installed in {dest}")
    return Kernel(release, dest / "vmlinux", dest / "modules")


def _download(package: str, into: Path, log) -> Path:
    log(f"downloading {package}")
    _run(["apt-get", "download", "-q", package], cwd=into)
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        raise Unavailable(f"apt-get download {package}: no package file produced")
    return found[-1]


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise Unavailable(f"{' '.join(argv[:3])}: {last}")
    return proc.stdout


# --- bzImage -> vmlinux ------------------------------------------------------

def _ensure_vmlinux(path: Path) -> Path:
    """A user kernel may be a bzImage: extract (once, next to the cache) its ELF."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"\x7fELF":
        return path
    st = path.stat()
    out = cache_dir() / "custom" / f"{st.st_ino}-{st.st_size}-{int(st.st_mtime)}.vmlinux"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(extract_vmlinux(path.read_bytes()))
        os.rename(tmp, out)
    return out


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF inside a bzImage (boot protocol >= 2.08 payload fields)."""
    if bzimage[0x202:0x206] != b"HdrS":
        raise FailedPrecondition("guest kernel: not a bzImage (no HdrS header)")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = bzimage[start:start + length]
    if payload[:2] == b"\x1f\x8b":
        import gzip
        out = gzip.decompress(payload)
    elif payload[:6] == b"\xfd7zXZ\x00" or payload[:3] == b"\x5d\x00\x00":
        import lzma
        out = lzma.LZMADecompressor().decompress(payload)
    elif struct.unpack_from("<I", payload)[0] == _LZ4_LEGACY:
        out = _lz4_legacy(payload)
    elif payload[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        out = zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    else:
        raise FailedPrecondition(f"guest kernel: unsupported compression {payload[:4].hex()}")
    if out[:4] != b"\x7fELF":
        raise FailedPrecondition("guest kernel: payload is not an ELF image")
    return out


def _lz4_legacy(payload: bytes) -> bytes:
    """LZ4 legacy frames (what the kernel's LZ4 bzImage uses), via the system liblz4."""
    import ctypes  # only on install: keeps it off the start path
    try:
        lib = ctypes.CDLL("liblz4.so.1")
    except OSError as exc:
        raise FailedPrecondition("guest kernel is LZ4-compressed and liblz4.so.1 is missing") from exc
    block_max = 8 << 20
    dst = ctypes.create_string_buffer(block_max)
    out = bytearray()
    pos = 4
    while pos + 4 <= len(payload):
        (size,) = struct.unpack_from("<I", payload, pos)
        pos += 4
        if size == _LZ4_LEGACY:
            continue
        if size > len(payload) - pos:
            break  # the kernel appends the uncompressed length: not a block
        got = lib.LZ4_decompress_safe(payload[pos:pos + size], dst, size, block_max)
        if got < 0:
            raise FailedPrecondition("guest kernel: corrupt LZ4 payload")
        out += dst.raw[:got]
        pos += size
    return bytes(out)
