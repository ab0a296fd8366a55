"""Kernel handling without downloading: bzImage payloads and module order."""

from __future__ import annotations

import ctypes
import gzip
import struct
from pathlib import Path

import pytest

from ketch.errors import FailedPrecondition
from ketch.vm import kernel

ELF = b"\x7fELF" + bytes(range(256)) * 64


def _bzimage(payload: bytes) -> bytes:
    setup_sects = 1
    image = bytearray((setup_sects + 1) * 512)
    image[0x1F1] = setup_sects
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", image, 0x248, 16, len(payload))
    return bytes(image) + b"\0" * 16 + payload + b"\0" * 64


def test_extract_gzip_payload():
    assert kernel.extract_vmlinux(_bzimage(gzip.compress(ELF))) == ELF


def test_extract_lz4_legacy_payload_with_trailing_size():
    try:
        lib = ctypes.CDLL("liblz4.so.1")
    except OSError:
        pytest.skip("needs liblz4.so.1")
    dst = ctypes.create_string_buffer(len(ELF) * 2)
    n = lib.LZ4_compress_default(ELF, dst, len(ELF), len(dst))
    # What the kernel's build writes: magic, one sized block, then the uncompressed size.
    payload = struct.pack("<II", 0x184C2102, n) + dst.raw[:n] + struct.pack("<I", len(ELF))
    assert kernel.extract_vmlinux(_bzimage(payload)) == ELF


def test_extract_rejects_non_bzimage():
    with pytest.raises(FailedPrecondition, match="not a bzImage"):
        kernel.extract_vmlinux(b"\0" * 4096)


def _module(root: Path, rel: str, depends: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=x\0")


def test_modules_follow_their_dependencies(tmp_path):
    _module(tmp_path, "kernel/fs/erofs.ko", "libcrc32c")
    _module(tmp_path, "kernel/lib/libcrc32c.ko", "")
    _module(tmp_path, "kernel/fs/virtiofs.ko", "fuse,virtio,virtio_ring")
    _module(tmp_path, "kernel/fs/fuse.ko", "")
    _module(tmp_path, "kernel/drivers/virtio.ko", "")
    _module(tmp_path, "kernel/drivers/virtio_ring.ko", "")
    k = kernel.Kernel("test", tmp_path / "vmlinux", tmp_path)
    names = [p.stem for p in kernel.modules_in_order(k, ["erofs", "virtiofs", "overlay"])]
    assert names == ["libcrc32c", "erofs", "fuse", "virtio", "virtio_ring", "virtiofs"]


def test_no_kernel_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_VM_CACHE", str(tmp_path))
    monkeypatch.delenv("KETCH_VM_KERNEL", raising=False)
    with pytest.raises(FailedPrecondition, match=r"run `ketch vm kernel --install`"):
        kernel.require()
