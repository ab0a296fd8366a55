"""Docker drives ketch-runc: --memory/--pids-limit/--cpus/--device-read-bps land in the
kernel, stats/pause/update/exec work, rm leaves no cgroup.

A private dockerd (own data root, exec root and socket in a temp dir, vfs,
no iptables/ip-forward/masquerade changes, --cgroup-parent below the test's
parent) with `--add-runtime ketch=<ketch-runc>`; the image is a busybox
rootfs imported from a tar. Skipped when dockerd is not installed or a
docker0 bridge already exists (a Docker daemon of the host's own).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ketch.runtime.cgroups import layout
from tests.conftest import command, need_tool


def _busybox_tar(root: Path) -> bytes:
    (root / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "sleep", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    return subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout


@contextlib.contextmanager
def _dockerd(parent: str):
    from ketch.network import ipam, link

    if link.exists("docker0"):
        pytest.skip("a docker0 bridge exists: the host runs its own Docker daemon")
    tmp = tempfile.mkdtemp(prefix="kcg-dk-")  # short: dockerd's socket paths have a length limit
    sock = f"{tmp}/docker.sock"
    net = ipam.pick_subnet(list(ipam.host_routes()), pool=[f"10.{n}.0.0/24" for n in range(200, 230)])
    log = open(f"{tmp}/dockerd.log", "wb")
    proc = subprocess.Popen(
        [need_tool("dockerd"), "--data-root", f"{tmp}/data", "--exec-root", f"{tmp}/exec",
         "--pidfile", f"{tmp}/docker.pid", "-H", f"unix://{sock}", "--iptables=false",
         "--ip6tables=false", "--ip-forward=false", "--ip-masq=false", "--storage-driver", "vfs",
         "--bip", f"{net.network_address + 1}/{net.prefixlen}",
         # Absolute, so no runtime reads it relative to dockerd's own cgroup.
         "--cgroup-parent", "/" + parent,
         "--add-runtime", f"ketch={command('ketch-runc')}",
         "--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=4096:4096"],
        stdout=log, stderr=log, start_new_session=True)

    def docker(*args: str, input: bytes | None = None) -> str:
        out = subprocess.run([need_tool("docker"), "-H", f"unix://{sock}", *args], input=input,
                             capture_output=True, timeout=120)
        if out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {out.stderr.decode().strip()}")
        return out.stdout.decode().strip()

    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited: {Path(tmp, 'dockerd.log').read_text()[-500:]}")
            with contextlib.suppress(AssertionError):
                if os.path.exists(sock) and docker("version", "-f", "{{.Server.Version}}"):
                    break
            time.sleep(0.1)
        docker("import", "-", "kcg-bb:1", input=_busybox_tar(Path(tmp, "bb")))
        yield docker
    finally:
        with contextlib.suppress(Exception):
            ids = docker("ps", "-aq").split()
            if ids:
                docker("rm", "-f", *ids)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True)
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-R", "-l", tmp], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.skipif(layout.detect().mode == "v2", reason="checks v1 files (hybrid/v1 host)")
def test_docker_limits_stats_pause_update_exec(ketch_env):
    need_tool("dockerd")
    parent = ketch_env["KETCH_CGROUP_PARENT"]
    mounts = layout.detect().mounts
    with _dockerd(parent) as docker:
        cid = docker("run", "-d", "--runtime", "ketch", "--memory", "64m", "--pids-limit", "33",
                     "--cpus", "0.5", "--cpu-shares", "512", "kcg-bb:1", "sleep", "60")
        read = lambda ctrl, name: Path(mounts[ctrl], parent, cid, name).read_text().strip()  # noqa: E731
        assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
        assert read("pids", "pids.max") == "33"
        assert read("cpu", "cpu.cfs_quota_us") == "50000"
        assert read("cpu", "cpu.shares") == "512"
        assert "c 1:3 rwm" in read("devices", "devices.list").splitlines()
        assert docker("stats", "--no-stream", "--format", "{{.PIDs}}", cid) == "1"
        docker("pause", cid)
        assert docker("inspect", "-f", "{{.State.Status}}", cid) == "paused"
        assert read("freezer", "freezer.state") == "FROZEN"
        docker("unpause", cid)
        docker("update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "50", cid)
        assert read("memory", "memory.limit_in_bytes") == str(128 << 20)
        assert read("pids", "pids.max") == "50"
        assert docker("exec", cid, "cat", "/proc/self/cgroup").count(cid) >= 8
        docker("rm", "-f", cid)
        assert not Path(mounts["memory"], parent, cid).exists()
