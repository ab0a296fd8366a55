"""Real engines drive ketch-runc: Podman (and Docker when a daemon with the runtime is up).

Podman runs with its own --root/--runroot under the test's tmp dir, cgroupfs,
no network, and an image imported from the busybox rootfs (no registry).
Docker runs as a private dockerd started by the test (own socket, data and
exec roots, no bridge, no iptables, `--add-runtime ketch=...`), with the
image imported the same way; it skips when Debian's docker.io is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import time

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


@pytest.fixture
def docker(tmp_path, ketch_env, _rootfs_template):
    """A private dockerd (own socket, data and exec roots; no bridge, no iptables)."""
    for tool in ("dockerd", "docker", "containerd"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (Debian's docker.io)")
    exec_root = tempfile.mkdtemp(prefix="ketch-dockerd-", dir="/run")  # short: unix sockets
    sock = f"unix://{exec_root}/docker.sock"
    log = open(tmp_path / "dockerd.log", "w")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(tmp_path / "docker"), "--exec-root", exec_root,
         "--pidfile", str(tmp_path / "dockerd.pid"), "-H", sock, "--bridge=none",
         "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--storage-driver", "vfs",
         "--add-runtime", f"ketch={command('ketch-runc')}",
         "--cgroup-parent", f"/{ketch_env['KETCH_CGROUP_PARENT']}/docker",
         "--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=4096:4096"],
        stdout=log, stderr=subprocess.STDOUT)

    def run(*args, check=True):
        proc = subprocess.run(["docker", "-H", sock, *args], capture_output=True, text=True,
                              timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc
    try:
        deadline = time.monotonic() + 60
        while run("info", check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"dockerd did not start: {(tmp_path / 'dockerd.log').read_text()[-300:]}")
            time.sleep(0.3)
        tar = tmp_path / "bb.tar"
        with tarfile.open(tar, "w") as t:
            t.add(_rootfs_template, arcname=".")
        run("import", str(tar), "ketch-bb")
        yield run
    finally:
        run("rm", "-f", "k1", check=False)
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        for d in (str(tmp_path / "docker"), exec_root):
            subprocess.run(["umount", "-R", "-l", d], capture_output=True)
        shutil.rmtree(exec_root, ignore_errors=True)


def test_docker_runs_and_execs_with_the_ketch_runtime(docker):
    run = ["run", "--rm", "--runtime", "ketch", "--network", "none"]
    script = ("id -u; touch /x 2>/dev/null && echo rw || echo ro; "
              "grep NoNewPrivs /proc/self/status; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; exit 3")
    proc = docker(*run, "--user", "65534:65534", "--read-only", "--memory", "64m",
                  "--security-opt", "no-new-privileges", "ketch-bb", "sh", "-c", script,
                  check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.split() == ["65534", "ro", "NoNewPrivs:", "1", str(64 << 20)]
    # Docker's exit codes for a command that cannot run come from runc's wording.
    assert docker(*run, "ketch-bb", "/no/such/cmd", check=False).returncode == 127
    docker("run", "-d", "--name", "k1", "--runtime", "ketch", "--network", "none", "ketch-bb",
           "sleep", "60")
    assert docker("exec", "k1", "sh", "-c", "echo $((6*7))").stdout == "42\n"
    assert docker("exec", "k1", "false", check=False).returncode == 1
    assert "sleep 60" in docker("top", "k1").stdout
    docker("pause", "k1")
    assert docker("inspect", "-f", "{{.State.Status}}", "k1").stdout.strip() == "paused"
    docker("unpause", "k1")
    docker("rm", "-f", "k1")
