"""Docker and Podman run busybox containers through ketch-runc.

Every test runs once per engine (see conftest.py): Docker with
`--runtime ketch` (`dockerd --add-runtime ketch=<ketch-runc>`), Podman with
`--runtime <ketch-runc>`. Each checks what the container sees from inside
(or the host's cgroup file), and the exit status the engine reports: the
engine turns ketch-runc's error wording into 126/127 just as it does with
runc's, so those codes prove the wording is runc's.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.interop.engines import Engine

IMAGE = "busybox"
MIB = 1 << 20


def run(engine: Engine, *args: str) -> subprocess.CompletedProcess:
    """`<engine> run --rm` with the engine's private flags, then args."""
    return engine(*engine.run_args(), "--rm", *args)


def test_true_exits_zero(engine):
    proc = run(engine, IMAGE, "true")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_exit_status_passes_through(engine):
    proc = run(engine, IMAGE, "sh", "-c", "echo out; exit 3")
    assert (proc.returncode, proc.stdout) == (3, "out\n"), proc.stderr


def test_user_sets_uid_gid_and_home(engine):
    # Docker sets no HOME: the runtime takes it from the image's /etc/passwd, as runc does.
    proc = run(engine, "--user", "65534:65534", IMAGE, "sh", "-c",
               "id -u; id -g; id -G; echo $HOME; grep ^nobody: /etc/passwd | cut -d: -f6")
    assert proc.returncode == 0, proc.stderr
    *ids, home, passwd_home = proc.stdout.split()
    assert ids == ["65534", "65534", "65534"]
    assert home == passwd_home != ""


def test_read_only_root_with_a_writable_tmpfs(engine):
    script = "echo kept > /t/f && cat /t/f; touch /x"
    proc = run(engine, "--read-only", "--tmpfs", "/t", IMAGE, "sh", "-c", script)
    assert proc.stdout == "kept\n", proc.stderr
    assert proc.returncode == 1
    assert "Read-only file system" in proc.stderr  # EROFS, not a permission problem


def test_memory_limit_seen_inside(engine):
    # v1 (hybrid here) or v2: the container's own cgroup is mounted at /sys/fs/cgroup.
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
              " || cat /sys/fs/cgroup/memory.max")
    proc = run(engine, "--memory", "64m", IMAGE, "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(64 * MIB)


def test_out_of_memory_is_killed_and_reported(engine):
    name = f"ketch-oom-{engine.name}"
    # tail buffers /dev/zero's endless "line": memory grows until the 16 MiB limit.
    proc = engine(*engine.run_args(), "--name", name, "--memory", "16m", "--memory-swap", "16m",
                  IMAGE, "tail", "/dev/zero")
    try:
        assert proc.returncode == 137, proc.stderr  # SIGKILL from the OOM killer
        state = engine("inspect", "-f", "{{.State.OOMKilled}}", name, check=True).stdout
        # containerd watches the container's memory cgroup for OOM events; Podman 4.3's
        # conmon does not report them on this hybrid host with runc either.
        if engine.name == "docker":
            assert state.strip() == "true"
    finally:
        engine("rm", "--force", name)


def test_no_new_privileges(engine):
    proc = run(engine, "--security-opt", "no-new-privileges", IMAGE,
               "grep", "NoNewPrivs", "/proc/self/status")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["NoNewPrivs:", "1"]


@pytest.mark.parametrize("argv, code", [
    (["/no/such/cmd"], 127),   # no such file
    (["nosuchcmd"], 127),      # not in $PATH
    (["/etc/passwd"], 126),    # not executable
    (["/"], 126),              # a directory
])
def test_command_that_cannot_run(engine, argv, code):
    proc = run(engine, IMAGE, *argv)
    assert proc.returncode == code, proc.stderr
    assert argv[0] in proc.stderr


def test_host_network_and_uts(engine):
    args = [a for a in engine.run_args() if a not in ("--network", "none")]
    proc = engine(*args, "--rm", "--network", "host", "--uts", "host", IMAGE, "sh", "-c",
                  "stat -L -c %i /proc/self/ns/net /proc/self/ns/uts; hostname")
    assert proc.returncode == 0, proc.stderr
    host = [str(os.stat(f"/proc/self/ns/{ns}").st_ino) for ns in ("net", "uts")]
    assert proc.stdout.split() == [*host, socket.gethostname()]


def test_user_namespace_mapping(engine):
    if engine.name == "docker":
        pytest.skip("Docker maps users only daemon-wide (--userns-remap), which needs "
                    "entries in the host's /etc/subuid")
    proc = run(engine, "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", IMAGE,
               "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map; touch /x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "100000", "65536", "0", "100000", "65536"]


def _host_memory_limit(pid: int) -> int:
    """The memory limit of the cgroup `pid` is in, read on the host (v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return int(Path("/sys/fs/cgroup/memory", path.lstrip("/"),
                            "memory.limit_in_bytes").read_text())
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return int(Path("/sys/fs/cgroup", line[3:].lstrip("/"), "memory.max").read_text())
    raise AssertionError(f"no memory cgroup for pid {pid}")


def test_capabilities_drop_all_add_one(engine):
    proc = run(engine, "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", IMAGE,
               "grep", "^Cap", "/proc/self/status")
    assert proc.returncode == 0, proc.stderr
    caps = dict(line.split(":\t") for line in proc.stdout.splitlines())
    only_net_bind = f"{1 << 10:016x}"  # CAP_NET_BIND_SERVICE is bit 10
    assert [caps[k] for k in ("CapPrm", "CapEff", "CapBnd")] == [only_net_bind] * 3
    assert caps["CapInh"] == caps["CapAmb"] == "0" * 16


def test_exec_into_a_detached_container(engine):
    name = f"ketch-exec-{engine.name}"
    # pid 1 handles SIGTERM: `stop` must deliver it (ketch-runc kill) for the status to be 7.
    script = "trap 'exit 7' TERM; sleep 300 & wait"
    created = engine(*engine.run_args(), "-d", "--name", name, "--memory", "64m", IMAGE,
                     "sh", "-c", script)
    assert created.returncode == 0, created.stderr
    try:
        pid = int(engine("inspect", "-f", "{{.State.Pid}}", name, check=True).stdout)
        assert _host_memory_limit(pid) == 64 * MIB

        proc = engine("exec", name, "sh", "-c", "echo from-exec; exit 5")
        assert (proc.returncode, proc.stdout) == (5, "from-exec\n"), proc.stderr
        proc = engine("exec", "--user", "65534", "-e", "A=b", "-w", "/tmp", name,
                      "sh", "-c", "id -u; echo $A; pwd")
        assert (proc.returncode, proc.stdout) == (0, "65534\nb\n/tmp\n"), proc.stderr
        proc = engine("exec", "--user", "4242", name, "sh", "-c", "echo $HOME")
        assert proc.stdout == "/\n", proc.stderr  # a uid /etc/passwd lacks: HOME=/ (runc)
        proc = engine("exec", "-t", name, "tty")  # a pty through --console-socket
        assert proc.stdout.strip() == "/dev/pts/0", proc.stderr
        # The exec'd process is in the container: same pid namespace, sees pid 1's shell.
        proc = engine("exec", name, "cat", "/proc/1/cmdline")
        assert proc.stdout.split("\0")[:3] == ["sh", "-c", script], proc.stderr
        # `docker top` asks the runtime (`ps --format json`) for the container's pids.
        assert "sleep 300" in engine("top", name, check=True).stdout
        # Without --security-opt, no_new_privs stays off (the test above can fail).
        proc = engine("exec", name, "grep", "NoNewPrivs", "/proc/self/status")
        assert proc.stdout.split() == ["NoNewPrivs:", "0"], proc.stderr
        # Docker reports any failed exec as 126; Podman tells 127 from 126.
        proc = engine("exec", name, "/no/such/cmd")
        assert proc.returncode == {"docker": 126, "podman": 127}[engine.name], proc.stderr
        said = proc.stdout + proc.stderr  # docker prints it on stdout
        assert said.count('exec: "/no/such/cmd": stat /no/such/cmd: no such file') == 1, said

        engine("stop", "--time", "20", name, check=True)
        code = engine("inspect", "-f", "{{.State.ExitCode}}", name, check=True).stdout
        assert code.strip() == "7"
    finally:
        engine("rm", "--force", name)
