"""The QEMU command line and the agent's frames, without starting anything."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from ketch.vm import proto, qemu


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.setattr(qemu, "qemu_binary", lambda: "/usr/bin/qemu-system-x86_64")
    return qemu.VmConfig(vmlinux=Path("/k/vmlinux"), initrd=Path("/s/initrd"),
                         console_log=Path("/s/console.log"), agent_fd=7,
                         root_image=Path("/c/root.erofs"))


def _opt(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_tcg_command_line(cfg, monkeypatch):
    monkeypatch.setattr(qemu, "host_tsc_khz", lambda: 2445406)
    args = qemu.argv(cfg)
    assert _opt(args, "-M") == ["microvm,x-option-roms=off,pit=off,pic=off"]
    assert _opt(args, "-accel") == ["tcg"]
    append = _opt(args, "-append")[0]
    assert "tsc_early_khz=2445406" in append and "acpi=off" not in append
    assert "virtio-mmio.force-legacy=false" in _opt(args, "-global")
    assert "socket,id=agent,fd=7" in _opt(args, "-chardev")
    assert "virtio-blk-device,drive=root" in _opt(args, "-device")
    assert "virtio-balloon-device,free-page-reporting=on" in _opt(args, "-device")
    assert not _opt(args, "-object") and not _opt(args, "-netdev")


def test_kvm_shares_and_ports(cfg):
    cfg.accel = "kvm"
    cfg.shares = [("ketchfs0", "/s/fs0.sock")]
    cfg.hostfwd = ["tcp::8080-:80"]
    args = qemu.argv(cfg)
    assert "tsc_early_khz" not in _opt(args, "-append")[0]
    assert _opt(args, "-object") == ["memory-backend-memfd,id=mem,size=512M,share=on"]
    assert "vhost-user-fs-device,chardev=fs0,tag=ketchfs0" in _opt(args, "-device")
    assert _opt(args, "-netdev") == ["user,id=net0,hostfwd=tcp::8080-:80"]


def test_process_encoding():
    p = proto.Process(args=["sh", "-c", "x"], env=["A=1"], cwd="/w", uid=1, gid=2, groups=[3],
                      terminal=True, rows=30, cols=100)
    records = [r.decode() for r in p.encode().split(b"\0")[:-1]]
    assert records == ["ash", "a-c", "ax", "eA=1", "c/w", "u1", "g2", "G3", "t1", "i1", "w30 100"]
    with pytest.raises(ValueError):
        proto.Process(args=["a\0b"]).encode()


def test_frames_survive_split_reads():
    a, b = socket.socketpair()
    data = proto.frame(proto.STDOUT, 1, b"x" * 100000) + proto.frame(proto.EXIT, 1, b"\x07\0\0\0")

    def dribble():
        for i in range(0, len(data), 777):
            a.sendall(data[i:i + 777])
        a.close()
    threading.Thread(target=dribble).start()
    reader = proto.FrameReader(b)
    assert reader.read() == (proto.STDOUT, 1, b"x" * 100000)
    kind, session, payload = reader.read()
    assert (kind, session, proto.int_payload(payload)) == (proto.EXIT, 1, 7)
    assert reader.read() is None


def test_request_line_leaves_following_frames_in_the_socket():
    from ketch.vm.shim import _read_line

    a, b = socket.socketpair()
    a.sendall(b'{"op": "exec"}\n' + proto.frame(proto.STDIN, 1, b"data") + proto.frame(proto.STDIN, 1))
    a.close()
    assert _read_line(b) == b'{"op": "exec"}'
    reader = proto.FrameReader(b)
    assert reader.read() == (proto.STDIN, 1, b"data")
    assert reader.read() == (proto.STDIN, 1, b"")


def test_tcg_translation_buffer_size(cfg, monkeypatch):
    monkeypatch.setenv("KETCH_VM_TCG_TB_SIZE", "32")
    assert _opt(qemu.argv(cfg), "-accel") == ["tcg,tb-size=32"]
    cfg.accel = "kvm"
    assert _opt(qemu.argv(cfg), "-accel") == ["kvm"]     # no translation buffer under KVM


@pytest.mark.parametrize("bad", ["0", "32M", "-1"])
def test_tcg_translation_buffer_size_bad(cfg, monkeypatch, bad):
    monkeypatch.setenv("KETCH_VM_TCG_TB_SIZE", bad)
    with pytest.raises(qemu.FailedPrecondition, match="KETCH_VM_TCG_TB_SIZE"):
        qemu.argv(cfg)
