"""Fixtures for the container engine's integration tests.

`ketch` runs the real CLI with the test's roots; `busybox` bootstraps the
base image into the test's KETCH_ROOT; `myapp` imports an image whose
config sets ENTRYPOINT, CMD, ENV, WORKDIR and USER and which carries a
setuid-root probe. The autouse `no_container_state` fixture adds to the
shared leak checks: no container row, runtime state, monitor file or
rootfs snapshot may outlive a test.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import command

PROBE_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid=%d\n", (int)geteuid()); return 0; }
"""


class Ketch:
    def __init__(self, env: dict[str, str]):
        self.bin = command("ketch")
        self.env = {**os.environ, **env}

    def __call__(self, *args: str, check: bool = True, timeout: float = 90,
                 input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.bin, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"ketch {' '.join(args)} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([self.bin, *args], env=self.env, text=True, **kw)


@pytest.fixture
def ketch(ketch_env) -> Ketch:
    return Ketch(ketch_env)


@pytest.fixture
def busybox(ketch) -> str:
    ketch("bootstrap", "busybox", "-q")
    return "busybox"


@pytest.fixture
def myapp(ketch, tmp_path) -> str:
    """An image with ENTRYPOINT/CMD/ENV/WORKDIR/USER and a setuid-root probe at /probe."""
    root = tmp_path / "myapp-rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "srv").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "id", "echo", "pwd", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    gcc = shutil.which("gcc")
    if gcc:
        src = tmp_path / "probe.c"
        src.write_text(PROBE_C)
        subprocess.run([gcc, "-static", "-O1", "-o", str(root / "probe"), str(src)], check=True)
        os.chmod(root / "probe", 0o4755)
    tar = tmp_path / "myapp.tar"
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    ketch("import",
          "-c", "ENV GREETING=hello", "-c", "WORKDIR /srv", "-c", "USER nobody",
          "-c", 'ENTRYPOINT ["/bin/sh", "-c"]',
          "-c", 'CMD ["echo $GREETING $(pwd) $(id -u):$(id -g)"]',
          str(tar), "myapp:latest")
    shutil.rmtree(root)
    return "myapp"


@pytest.fixture(autouse=True)
def no_container_state(ketch_env):
    """After the test: no container row, runtime state, monitor or lock file, or snapshot left."""
    yield
    root, run = Path(ketch_env["KETCH_ROOT"]), Path(ketch_env["KETCH_RUNROOT"])
    left = []
    if (root / "ketch.db").exists():
        conn = sqlite3.connect(root / "ketch.db")
        try:
            rows = conn.execute("SELECT id, name, status FROM containers").fetchall()
        except sqlite3.OperationalError:
            rows = []
        try:
            snaps = conn.execute("SELECT key FROM snapshots WHERE kind='active'").fetchall()
        except sqlite3.OperationalError:
            snaps = []
        conn.close()
        if rows:
            left.append(f"container rows {rows}")
        if snaps:
            left.append(f"active snapshots {snaps}")
    # Lock files: a removed container's monitor may still be running its exit
    # command (which takes the lock, finds nothing and drops it): give it a moment.
    locks, deadline = run / "locks", time.monotonic() + 5
    while locks.is_dir() and any(locks.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for d in (root / "containers", run / "containers", run / "runtime", run / "exits", locks):
        if d.is_dir() and any(d.iterdir()):
            left.append(f"{d}: {sorted(p.name for p in d.iterdir())}")
    assert not left, "container state left behind: " + "; ".join(left)
