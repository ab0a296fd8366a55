"""Podman drives ketch-runc: its cgroup limits land in the kernel, pause works, delete cleans up.

Podman runs with its own storage (vfs: no mounts) under tmp_path and puts
the container below the test's cgroup parent (--cgroup-parent), so the
leak checks cover it. The image is a two-file busybox rootfs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from ketch.runtime.cgroups import layout
from tests.conftest import command, need_tool


def _podman(tmp_path: Path, runroot: str, env: dict[str, str]):
    base = [need_tool("podman"), "--root", str(tmp_path / "pm-root"), "--runroot",
            runroot, "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--runtime", command("ketch-runc")]

    def run(*args: str, check: bool = True) -> str:
        out = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **env})
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    return run


def _busybox_image(tmp_path: Path) -> Path:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("needs busybox-static")
    root = tmp_path / "bb"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in ("sh", "sleep", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    tar = tmp_path / "bb.tar"
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    return tar


@pytest.mark.skipif(layout.detect().mode == "v2", reason="checks v1 files (hybrid/v1 host)")
def test_podman_limits_pause_and_cleanup(ketch_env, tmp_path):
    runroot = tempfile.mkdtemp(prefix="kcg-pm-")  # podman wants a runroot under 50 characters
    podman = _podman(tmp_path, runroot, {})
    podman("import", str(_busybox_image(tmp_path)), "localhost/ketch-bb:cg")
    parent = "/" + ketch_env["KETCH_CGROUP_PARENT"]
    cid = podman("run", "-d", "--cgroup-parent", parent, "--ulimit", "nofile=1024:1024",
                 "--ulimit", "nproc=4096:4096", "--memory", "64m", "--pids-limit", "33",
                 "--cpu-shares", "512", "--cpus", "0.5", "localhost/ketch-bb:cg", "sleep", "60")
    try:
        rel = f"{parent.strip('/')}/libpod-{cid}"
        mounts = layout.detect().mounts
        read = lambda ctrl, name: Path(mounts[ctrl], rel, name).read_text().strip()  # noqa: E731
        assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
        assert read("pids", "pids.max") == "33"
        assert read("cpu", "cpu.shares") == "512"
        assert read("cpu", "cpu.cfs_quota_us") == "50000"
        assert "c 1:3 rwm" in read("devices", "devices.list").splitlines()
        state = podman("inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}} {{.State.Error}}", cid)
        assert state.startswith("running"), state
        podman("pause", cid)
        assert read("freezer", "freezer.state") == "FROZEN"
        podman("unpause", cid)
        assert read("freezer", "freezer.state") == "THAWED"
    finally:
        podman("rm", "-f", "-t", "0", cid, check=False)
        shutil.rmtree(runroot, ignore_errors=True)
        _remove_podman_conmon_cgroups(parent.strip("/"))
    assert not Path(layout.detect().mounts["memory"], parent.strip("/"), f"libpod-{cid}").exists()


def _remove_podman_conmon_cgroups(parent: str) -> None:
    """Podman (not ketch) leaves <cgroup-parent>/conmon behind; it is inside the test's parent."""
    for mount in set(layout.detect().mounts.values()):
        d = Path(mount, parent, "conmon")
        for _ in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)  # conmon is still exiting
