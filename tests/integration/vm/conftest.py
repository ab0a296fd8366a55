"""Fixtures for micro-VM tests: a busybox bundle, the runtime's root, and a
check that no QEMU, virtiofsd or shim outlives a test.

The guest kernel comes from the shared cache (KETCH_VM_CACHE or
/var/cache/ketch/vm; `scripts/setup.sh` installs it), so tests never download.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import command, need_root

BUSYBOX = "/bin/busybox"
VM_PROCESSES = ("qemu-system", "virtiofsd", "ketch.vm.shim")


def need_vm() -> None:
    need_root()
    from ketch.vm import kernel, qemu
    if shutil.which(qemu.QEMU) is None:
        pytest.skip("needs qemu-system-x86_64")
    if kernel.current() is None:
        pytest.skip("no guest kernel in the cache: run `ketch vm kernel --install`")
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox-static")


def make_bundle(base: Path, args: list[str], **extra) -> Path:
    """An OCI bundle whose rootfs is busybox-static and its applet links."""
    bundle = base / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root"):
        (rootfs / d).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    config = {"ociVersion": "1.0.2",
              "process": {"args": args, "env": ["PATH=/bin", "HOME=/root"], "cwd": "/"},
              "root": {"path": "rootfs"}, "hostname": "vmtest",
              "annotations": {"ketch.vm.network": "none"}}
    for key, value in extra.items():
        config[key] = value
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def vm_processes(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and any(name in cmd for name in VM_PROCESSES):
            found.append(int(entry))
    return found


@pytest.fixture
def runv(tmp_path: Path, ketch_env):
    """Run ketch-runv with a root under this test's directory; after the test,
    fail if a QEMU/virtiofsd/shim naming that directory is still alive."""
    need_vm()
    root = tmp_path / "runv"
    binary = command("ketch-runv")

    def run(*args, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 120)
        return subprocess.run([binary, "--root", str(root), *args], **kw)
    run.root = root
    run.binary = binary
    yield run
    deadline = time.monotonic() + 5
    while (left := vm_processes(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"micro-VM processes left behind: {left}"
