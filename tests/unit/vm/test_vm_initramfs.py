"""The cached base initramfs holds what the run loads, nothing more (the guest
kernel unpacks all of it before init runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ketch.vm import initramfs, kernel

from .test_vm_cpio import _parse


def _module(root: Path, rel: str, depends: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=x\0")


@pytest.fixture
def fake_kernel(tmp_path, monkeypatch):
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("needs gcc to build the guest agent")
    if not Path(initramfs.BUSYBOX).exists():
        pytest.skip(f"needs {initramfs.BUSYBOX}")
    monkeypatch.setenv("KETCH_VM_CACHE", str(tmp_path / "cache"))
    mods = tmp_path / "modules"
    _module(mods, "kernel/fs/erofs.ko", "libcrc32c")
    _module(mods, "kernel/lib/libcrc32c.ko", "")
    _module(mods, "kernel/drivers/virtio_net.ko", "")
    return kernel.Kernel("test", tmp_path / "vmlinux", mods)


def _names(path: Path) -> set[str]:
    return {name for name, _mode, _body in _parse(path.read_bytes())}


def test_run_initrd_holds_only_the_loaded_modules(fake_kernel, tmp_path):
    lines = [f"module {m}" for m in initramfs.modules_for(fake_kernel, set())] + ["root /dev/vda"]
    assert lines[:2] == ["module /lib/modules/libcrc32c.ko", "module /lib/modules/erofs.ko"]
    out = initramfs.write_run_initrd(fake_kernel, lines, tmp_path / "initrd")
    names = _names(initramfs.base(fake_kernel, ("libcrc32c.ko", "erofs.ko"), busybox=False))
    assert {"init", "lib/modules/erofs.ko", "lib/modules/libcrc32c.ko"} <= names
    assert "lib/modules/virtio_net.ko" not in names and "bin/busybox" not in names
    # The per-run archive follows the base at a 4-byte boundary and carries the config.
    data = out.read_bytes()
    at = data.rindex(b"ketch/config")
    assert b"root /dev/vda\n" in data[at:]


def test_user_networking_brings_busybox_and_its_module(fake_kernel, tmp_path):
    lines = [f"module {m}" for m in initramfs.modules_for(fake_kernel, {"net"})] + ["net"]
    initramfs.write_run_initrd(fake_kernel, lines, tmp_path / "initrd")
    mods = tuple(ln.rsplit("/", 1)[-1] for ln in lines if ln.startswith("module "))
    names = _names(initramfs.base(fake_kernel, mods, busybox=True))
    assert {"bin/busybox", "bin/sh", "lib/modules/virtio_net.ko"} <= names
    # One cached base per module set: the plain run's is another file.
    builds = list((tmp_path / "cache" / "initramfs").glob("*.cpio"))
    assert len(builds) == 1
