"""VM disk -> root filesystem: the "lift and shift" direction.

A disk image (raw or qcow2; whole-disk ext4, or MBR/GPT with an ext4
partition) is read in user space with debugfs -- never mounted, since the
disk is untrusted input for the host kernel -- into a directory, which the
caller turns into an image. qcow2 is first converted to a sparse raw file
with qemu-img.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from ketch.errors import FailedPrecondition, InvalidArgument, NotFound

EXT_MAGIC = 0xEF53
SECTOR = 512


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        raise FailedPrecondition(f"{name} not found: install {package}")
    return found


def _is_ext(f, offset: int) -> bool:
    f.seek(offset + 1024 + 56)
    raw = f.read(2)
    return len(raw) == 2 and struct.unpack("<H", raw)[0] == EXT_MAGIC


def _partitions(f) -> list[tuple[int, int]]:
    """(byte offset, byte size) of each MBR or GPT partition."""
    f.seek(SECTOR)
    if f.read(8) == b"EFI PART":
        f.seek(SECTOR + 72)
        entries_lba, count, size = struct.unpack("<QII", f.read(16))
        out = []
        for i in range(min(count, 128)):
            f.seek(entries_lba * SECTOR + i * size)
            entry = f.read(size)
            first, last = struct.unpack_from("<QQ", entry, 32)
            if entry[:16] != b"\0" * 16 and last >= first:
                out.append((first * SECTOR, (last - first + 1) * SECTOR))
        return out
    f.seek(0x1FE)
    if f.read(2) != b"\x55\xaa":
        return []
    f.seek(0x1BE)
    table = f.read(64)
    out = []
    for i in range(4):
        kind = table[i * 16 + 4]
        start, sectors = struct.unpack_from("<II", table, i * 16 + 8)
        if kind and sectors:
            out.append((start * SECTOR, sectors * SECTOR))
    return out


def find_ext4(raw: Path) -> int:
    """Byte offset of the ext2/3/4 filesystem in a raw disk (the largest one)."""
    with open(raw, "rb") as f:
        if _is_ext(f, 0):
            return 0
        found = [(size, off) for off, size in _partitions(f) if _is_ext(f, off)]
    if not found:
        raise InvalidArgument(f"disk {str(raw)!r}: no ext2/3/4 filesystem found")
    return max(found)[1]


def _format(path: Path) -> str:
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def extract(disk: Path, dest: Path) -> None:
    """Copy the disk's ext4 filesystem tree into `dest` (owners, modes, links kept)."""
    if not disk.is_file():
        raise NotFound(f"disk {str(disk)!r}: no such file")
    debugfs = _tool("debugfs", "e2fsprogs")
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".disk-") as tmp:
        raw = disk
        if _format(disk) == "qcow2":
            raw = Path(tmp) / "disk.raw"
            proc = subprocess.run([_tool("qemu-img", "qemu-utils"), "convert", "-O", "raw",
                                   str(disk), str(raw)], capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                raise InvalidArgument(f"disk {str(disk)!r}: qemu-img convert: {last}")
        offset = find_ext4(raw)
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([debugfs, "-R", f"rdump / {dest}", f"{raw}?offset={offset}"],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not any(dest.iterdir()):
            last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            raise InvalidArgument(f"disk {str(disk)!r}: debugfs: {last}")
    shutil.rmtree(dest / "lost+found", ignore_errors=True)
