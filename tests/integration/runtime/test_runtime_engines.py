"""Real engines drive ketch-runc: Podman (and Docker when a daemon with the runtime is up).

Podman runs with its own --root/--runroot under the test's tmp dir, cgroupfs,
no network, and an image imported from the busybox rootfs (no registry).
Docker needs a running dockerd started with
`--add-runtime ketch=$(command -v ketch-runc)`; without one the test skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from tests.conftest import command

ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@pytest.fixture
def podman(tmp_path, _rootfs_template):
    exe = shutil.which("podman")
    if not exe:
        pytest.skip("podman is not installed")
    if not shutil.which("conmon"):
        pytest.skip("conmon is not installed")
    runroot = tempfile.mkdtemp(prefix="ketch-podman-", dir="/run")  # podman wants <= 50 chars
    base = [exe, "--root", str(tmp_path / "storage"), "--runroot", runroot,
            "--runtime", command("ketch-runc"), "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--storage-driver", "vfs"]

    def run(*args, check=True, timeout=120):
        proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc
    tar = tmp_path / "bb.tar"
    with tarfile.open(tar, "w") as t:
        t.add(_rootfs_template, arcname=".")
    run("import", str(tar), "localhost/ketch-bb:latest")
    yield run
    run("rm", "--all", "--force", check=False)
    run("rmi", "--all", "--force", check=False)
    subprocess.run(["umount", "-R", "-l", str(tmp_path / "storage")], capture_output=True)
    subprocess.run(["umount", "-R", "-l", runroot], capture_output=True)
    shutil.rmtree(runroot, ignore_errors=True)


def test_podman_runs_and_execs(podman):
    """One container with Docker's usual flags, checked from inside; then exec into one."""
    script = ("id -u; touch /x 2>/dev/null && echo rw || echo ro; "
              "grep NoNewPrivs /proc/self/status; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; exit 3")
    proc = podman("run", "--rm", "--network", "none", *ULIMITS, "--user", "65534:65534",
                  "--read-only", "--security-opt=no-new-privileges", "--memory", "64m",
                  "localhost/ketch-bb", "sh", "-c", script, check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.split() == ["65534", "ro", "NoNewPrivs:", "1", str(64 << 20)]
    podman("run", "-d", "--name", "k1", "--network", "none", *ULIMITS, "localhost/ketch-bb",
           "sleep", "60")
    try:
        assert podman("exec", "k1", "sh", "-c", "echo $((6*7))").stdout == "42\n"
        assert podman("exec", "k1", "false", check=False).returncode == 1
    finally:
        podman("rm", "--force", "k1", check=False)


def test_docker_runs_with_the_ketch_runtime():
    exe = shutil.which("docker")
    if not exe:
        pytest.skip("docker is not installed")
    info = subprocess.run([exe, "info", "--format", "{{json .Runtimes}}"], capture_output=True,
                          text=True, timeout=30)
    if info.returncode != 0:
        pytest.skip("no docker daemon is running")
    if "ketch" not in json.loads(info.stdout or "{}"):
        pytest.skip("dockerd was not started with --add-runtime ketch=$(command -v ketch-runc)")
    out = subprocess.run([exe, "run", "--rm", "--runtime", "ketch", "--network", "none",
                          "busybox", "echo", "hi"], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
