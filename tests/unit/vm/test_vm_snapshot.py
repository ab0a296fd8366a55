"""Snapshot restore, host side, without QEMU: which runs qualify, what the key
covers, what the restored guest is sent, and the padded root disk."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from ketch.vm import accel, proto, qemu, rootfs, snapshot
from ketch.vm.kernel import Kernel

SHAPE = {"accel": "tcg", "cpus": 1, "memory_mib": 512, "net": False, "balloon": True,
         "shares": False}


@pytest.fixture
def fake_host(monkeypatch, tmp_path):
    monkeypatch.setattr(qemu, "qemu_binary", lambda: "/usr/bin/qemu-system-x86_64")
    monkeypatch.setattr(qemu, "host_tsc_khz", lambda: 2000000)
    monkeypatch.setattr(accel, "qemu_version", lambda: "QEMU emulator version 7.2.0")
    monkeypatch.setenv("KETCH_VM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KETCH_VM_SNAPSHOT", raising=False)
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(b"\x7fELF kernel")
    return Kernel("6.1.0-test", vmlinux, None)


def _padded(tmp_path: Path, size: int = rootfs.DISK_BYTES) -> Path:
    image = tmp_path / "root.erofs"
    with open(image, "wb") as f:
        f.truncate(size)
    return image


def test_only_tcg_runs_without_volumes_on_padded_disks_qualify(fake_host, tmp_path, monkeypatch):
    image = _padded(tmp_path)
    for change in ({"accel": "kvm"}, {"shares": True}):
        assert snapshot.prepare(fake_host, {**SHAPE, **change}, [], image, []) is None
    small = tmp_path / "small.erofs"
    small.write_bytes(b"\0" * 4096)       # not padded (as an image over DISK_BYTES stays)
    assert snapshot.prepare(fake_host, SHAPE, [], small, []) is None
    monkeypatch.setenv("KETCH_VM_SNAPSHOT", "0")
    assert not snapshot.enabled("tcg")
    monkeypatch.setenv("KETCH_VM_SNAPSHOT", "1")
    assert snapshot.enabled("tcg") and not snapshot.enabled("kvm")


def test_key_covers_the_shape_not_the_run(fake_host, monkeypatch):
    base = Path("/cache/initramfs/0123.cpio")
    key = snapshot._key(fake_host, base, SHAPE)
    assert snapshot._key(fake_host, base, dict(SHAPE)) == key
    for change in ({"cpus": 2}, {"memory_mib": 320}, {"net": True}, {"balloon": False}):
        assert snapshot._key(fake_host, base, {**SHAPE, **change}) != key, change
    assert snapshot._key(fake_host, Path("/cache/initramfs/4567.cpio"), SHAPE) != key
    fake_host.vmlinux.write_bytes(b"\x7fELF another kernel, same path")
    rebuilt = snapshot._key(fake_host, base, SHAPE)
    assert rebuilt != key
    monkeypatch.setattr(accel, "qemu_version", lambda: "QEMU emulator version 8.2.0")
    assert snapshot._key(fake_host, base, SHAPE) not in (key, rebuilt)


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        reader = proto.FrameReader(b)
        out = []
        while (got := reader.read()) is not None:
            out.append(got)
    return out


def test_config_frames_carry_files_clock_and_fresh_entropy(tmp_path, monkeypatch):
    bound = tmp_path / "hosts"
    bound.write_bytes(b"127.0.0.1 localhost\n")
    monkeypatch.setattr(proto.time, "time_ns", lambda: 1_700_000_000_123_456_789)
    snap = {"files": [("files/0", str(bound))],
            "config": ["root /dev/vda", "file /ketch/files/0 /etc/hosts", "hostname web"]}
    first = _frames(proto.config_frames(snap["files"], snap["config"]))
    assert [(k, s) for k, s, _ in first] == [(proto.FILE, 0), (proto.CONFIG, 0)]
    assert first[0][2] == b"files/0\x00" + b"127.0.0.1 localhost\n"
    lines = first[1][2].decode().splitlines()
    assert lines[0] == "clock 1700000000 123456789"
    assert lines[1].startswith("entropy ") and len(bytes.fromhex(lines[1][8:])) == 32
    assert lines[2:] == snap["config"]
    # Two restores of one snapshot must not share random state.
    again = _frames(proto.config_frames(snap["files"], snap["config"]))[1][2].decode().splitlines()
    assert again[1] != lines[1]


def test_restore_command_line_reads_the_state_from_an_fd(fake_host):
    cfg = qemu.VmConfig(vmlinux=Path("/k/vmlinux"), initrd=Path("/s/initrd"),
                        console_log=Path("/s/console.log"), agent_fd=7, incoming_fd=9)
    args = qemu.argv(cfg)
    assert args[args.index("-incoming") + 1] == "fd:9"
    cfg.incoming_fd = None
    assert "-incoming" not in qemu.argv(cfg)


def test_erofs_images_are_padded_sparse_to_one_size(tmp_path, monkeypatch):
    if shutil.which("mkfs.erofs") is None:
        pytest.skip("needs mkfs.erofs (erofs-utils)")
    monkeypatch.setenv("KETCH_VM_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("x\n")
    image = rootfs.image_for(tree)
    st = image.stat()
    assert st.st_size == rootfs.DISK_BYTES
    assert st.st_blocks * 512 < 1 << 20          # the padding is a hole
    # An image cached before the padding existed is extended when next used.
    os.truncate(image, 8192)
    assert rootfs.image_for(tree).stat().st_size == rootfs.DISK_BYTES


def test_prune_keeps_the_most_recent_and_drops_stale_partial_saves(tmp_path):
    now = time.time()
    for i in range(snapshot.KEEP + 2):
        for suffix in (".vm", ".initrd"):
            f = tmp_path / f"k{i}{suffix}"
            f.write_bytes(b"x")
            os.utime(f, (now - 100 * i, now - 100 * i))
    stale, fresh = tmp_path / ".k0.vm.123", tmp_path / ".k1.vm.456"
    stale.write_bytes(b"partial")
    os.utime(stale, (now - 3600, now - 3600))
    fresh.write_bytes(b"partial")            # maybe a save in progress
    snapshot._prune(tmp_path)
    kept = sorted(p.name for p in tmp_path.glob("*.vm"))
    assert kept == sorted(f"k{i}.vm" for i in range(snapshot.KEEP))
    assert not (tmp_path / f"k{snapshot.KEEP}.initrd").exists()
    assert (tmp_path / "k0.initrd").exists()
    assert not stale.exists() and fresh.exists()
