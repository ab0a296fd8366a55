"""A private, throw-away dockerd for the network benchmark's comparison rows.

Started only by bench/net_throughput.py when `dockerd` is installed. It is
kept away from the host's own state: its own data root, exec root, socket
and pid file in a temp dir; the vfs storage driver; cgroups under
`/ketch/bench-docker` (absolute); `--iptables=false --ip-forward=false --ip-masq=false`
so it changes no firewall rule or sysctl of the host (published ports then
go through docker-proxy, Docker's userland proxy, which is also the path
Docker uses for 127.0.0.1 by default); its docker0 gets a free subnet and is
deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

from ketch.bench.probes import remove_cgroup_tree

ULIMITS = ["--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=4096:4096"]


def available() -> bool:
    return bool(shutil.which("dockerd") and shutil.which("docker"))


class Docker:
    def __init__(self, sock: str):
        self.sock = sock

    def __call__(self, *args: str, input: bytes | None = None) -> str:
        r = subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], input=input,
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.decode().strip()}")
        return r.stdout.decode().strip()

    def pid(self, name: str) -> int:
        return int(self("inspect", "-f", "{{.State.Pid}}", name))

    def ip(self, name: str) -> str:
        return self("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)


def _busybox_tar(tmp: str) -> bytes:
    root = os.path.join(tmp, "bbroot")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "sleep"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    return subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True,
                          check=True).stdout


def _free_bip() -> str:
    from ketch.network import ipam

    net = ipam.pick_subnet([(d, n) for d, n in ipam.host_routes()],
                           pool=[f"10.{n}.0.0/24" for n in range(230, 250)])
    return f"{net.network_address + 1}/{net.prefixlen}"


@contextlib.contextmanager
def dockerd() -> Iterator[Docker]:
    from ketch.network import link

    if link.exists("docker0"):
        raise RuntimeError("a docker0 bridge already exists (a Docker daemon runs here?)")
    tmp = tempfile.mkdtemp(prefix="ketch-bench-docker-")
    sock = os.path.join(tmp, "docker.sock")
    log = open(os.path.join(tmp, "dockerd.log"), "wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", f"{tmp}/data", "--exec-root", f"{tmp}/exec",
         "--pidfile", f"{tmp}/docker.pid", "-H", f"unix://{sock}",
         "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
         "--storage-driver", "vfs", "--bip", _free_bip(),
         # Absolute: a relative parent is taken from dockerd's own cgroup by
         # runc, which in the memory hierarchy here is not ketch's to touch.
         "--cgroup-parent", "/ketch/bench-docker", *ULIMITS],
        stdout=log, stderr=log, start_new_session=True)
    d = Docker(sock)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited; see {tmp}/dockerd.log")
            if os.path.exists(sock):
                with contextlib.suppress(RuntimeError):
                    d("version")
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("dockerd did not answer within 30 s")
        d("import", "-", "ketch-bench-busybox:1", input=_busybox_tar(tmp))
        yield d
    finally:
        with contextlib.suppress(Exception):
            names = d("ps", "-aq").split()
            if names:
                d("rm", "-f", *names)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _delete_link("docker0")
        remove_cgroup_tree("ketch/bench-docker")
        subprocess.run(["umount", "-R", "-l", f"{tmp}/data"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _delete_link(name: str) -> None:
    from ketch.network import link

    with contextlib.suppress(Exception):
        link.delete(name)
