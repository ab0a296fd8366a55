"""Accelerator choice: forced, cached verdicts, and what `info` shows."""

from __future__ import annotations

import pytest

from ketch.vm import accel, kernel


@pytest.fixture
def fake_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_VM_CACHE", str(tmp_path))
    monkeypatch.delenv("KETCH_VM_ACCEL", raising=False)
    monkeypatch.setattr(accel, "qemu_version", lambda: "QEMU 9.9")
    return kernel.Kernel("6.1-test", tmp_path / "vmlinux", None)


def test_forced_accelerator(fake_kernel, monkeypatch):
    monkeypatch.setenv("KETCH_VM_ACCEL", "tcg")
    monkeypatch.setattr(accel, "probe_kvm", lambda k: pytest.fail("must not probe"))
    assert accel.choose(fake_kernel) == "tcg"


def test_probe_once_then_cached_with_one_notice(fake_kernel, monkeypatch):
    calls, notices = [], []

    def probe(k):
        calls.append(k)
        return False, "guest did not boot within 4s"
    monkeypatch.setattr(accel, "probe_kvm", probe)
    assert accel.choose(fake_kernel, notices.append) == "tcg"
    assert accel.choose(fake_kernel, notices.append) == "tcg"
    assert len(calls) == 1
    assert notices == ["KVM is not usable (guest did not boot within 4s); micro-VMs use TCG emulation"]


def test_describe_without_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_VM_CACHE", str(tmp_path))
    monkeypatch.delenv("KETCH_VM_KERNEL", raising=False)
    info = accel.describe()
    assert info["accelerator"] == "unknown"
    assert "ketch vm kernel --install" in info["reason"]
