"""Helpers for the image integration tests: the CLI, a bootstrapped busybox, mounts."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from tests.conftest import command


def ketch(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([command("ketch"), *args], input=input, capture_output=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"ketch {' '.join(args)} -> {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


@pytest.fixture
def busybox(ketch_env):
    ketch("bootstrap", "busybox", "-q")
    return "busybox:latest"


@pytest.fixture
def conn(ketch_env):
    from ketch.engine import db

    c = db.connect()
    yield c
    c.close()


def _mount(m: dict, target: Path) -> None:
    opts = [o for o in m.get("options", []) if o not in ("rbind", "bind")]
    if m["type"] == "bind":
        subprocess.run(["mount", "--rbind", m["source"], str(target)], check=True)
        if "ro" in opts:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        return
    subprocess.run(["mount", "-t", m["type"], "-o", ",".join(opts), m["source"], str(target)],
                   check=True, capture_output=True)


@contextlib.contextmanager
def mounted(mounts: list[dict], target: Path):
    """Mount a snapshot's mounts on target (ketch.runtime.mount if present), then undo."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        from ketch.runtime import mount as rt  # the runtime's own, when it exists
        do, undo = rt.mount_all, rt.unmount_all
    except (ImportError, AttributeError):
        do, undo = None, None
    if do is not None:
        do(mounts, str(target))
    else:
        for m in mounts:
            _mount(m, target)
    try:
        yield target
    finally:
        if undo is not None:
            undo(str(target))
        else:
            subprocess.run(["umount", "-R", str(target)], check=True)


def chroot_sh(root: Path, script: str) -> str:
    proc = subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
