"""Network integration fixtures: stand-in containers in real namespaces, and leak checks.

A stand-in container is a busybox process in a fresh network and mount
namespace (unshare), with the files the engine would bind-mount on
/etc/hosts and /etc/resolv.conf bound there before attach, exactly as the
engine does; commands run inside it with nsenter. The `net_no_leaks`
fixture fails a test that leaves a veth, bridge, nftables table or DNS
server of its root behind, then removes them; `boxes` fails a test that
leaves a process in one of its namespaces.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import need_tool

BUSYBOX = "/bin/busybox"


def _dns_pids(tmp_path: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ketch.network.dns" in cmd and str(tmp_path).encode() in cmd:
            found.append(int(entry))
    return found


@pytest.fixture
def conn(ketch_env):
    from ketch.engine import db

    c = db.connect()
    yield c
    c.close()


@pytest.fixture(autouse=True)
def net_no_leaks(ketch_env, tmp_path: Path):
    """Links and nft tables are checked for every integration test (../conftest.py);
    here also the embedded DNS servers a user network starts."""
    need_tool("nft")
    need_tool("unshare")
    need_tool("nsenter")
    yield
    deadline = time.monotonic() + 3
    while (dns := _dns_pids(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in dns:
        os.kill(pid, signal.SIGKILL)
    if dns:
        pytest.fail(f"leaked: DNS servers {dns}", pytrace=False)


class Box:
    """A stand-in container: busybox in its own net + mount namespace."""

    def __init__(self, tmp_path: Path, name: str):
        self.dir = tmp_path / f"box-{name}"
        self.dir.mkdir()
        self.hosts = self.dir / "hosts"
        self.resolv = self.dir / "resolv.conf"
        self.hosts.write_text("")
        self.resolv.write_text("")
        script = (f"mount --bind {self.hosts} /etc/hosts && "
                  f"mount --bind {self.resolv} /etc/resolv.conf && exec {BUSYBOX} sleep 600")
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--",
             BUSYBOX, "sh", "-c", script])
        self.pid = self.proc.pid
        # Wait until the process runs in its own namespaces (the exec of sleep).
        host_ns = os.stat("/proc/self/ns/net").st_ino
        for _ in range(1000):
            if b"sleep" in Path(f"/proc/{self.pid}/cmdline").read_bytes() \
                    and os.stat(f"/proc/{self.pid}/ns/net").st_ino != host_ns:
                break
            time.sleep(0.01)
        else:
            self.kill()
            raise AssertionError("stand-in container did not get its own namespaces")
        self.netns = f"/proc/{self.pid}/ns/net"
        self.netns_inode = os.stat(self.netns).st_ino

    def opts(self, **extra) -> dict:
        return {"hosts_path": str(self.hosts), "resolv_conf_path": str(self.resolv), **extra}

    def run(self, *cmd: str, input: str | None = None, timeout: float = 10,
            check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(self.pid), "-n", "-m", *cmd],
                              input=input, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run(BUSYBOX, "sh", "-c", script, **kw)

    def spawn(self, *cmd: str) -> subprocess.Popen:
        return subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "-m", *cmd],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def boxes(tmp_path: Path):
    """Factory of stand-in containers; all are killed (with their children) at the end."""
    made: list[Box] = []
    spawned: list[subprocess.Popen] = []

    def make(name: str) -> Box:
        box = Box(tmp_path, name)
        orig = box.spawn

        def spawn(*cmd: str) -> subprocess.Popen:
            p = orig(*cmd)
            spawned.append(p)
            return p

        box.spawn = spawn
        made.append(box)
        return box

    yield make
    for p in spawned:
        if p.poll() is None:
            p.kill()
        p.wait()
    for box in made:
        box.kill()
    # No process may still sit in a namespace the test made (a DNS server
    # holds sockets there, not a process: net_no_leaks checks those).
    inodes = {box.netns_inode for box in made} - {os.stat("/proc/self/ns/net").st_ino}
    stuck = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    stuck.append(int(entry))
            except OSError:
                continue
    if stuck:  # reported, never killed here: judge by the report, not by a sweep
        pytest.fail(f"leaked: processes {stuck} in the test's network namespaces",
                    pytrace=False)


def free_port(kind: int = 1) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def host_address() -> str:
    """A global IPv4 address of the host itself (not loopback, not ours)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for a in ipr.get_addr(family=2):
            name = names.get(a["index"], "")
            if a["scope"] == 0 and not name.startswith(("k", "lo")):
                return a.get_attr("IFA_ADDRESS")
    pytest.skip("the host has no global IPv4 address")


def http_get(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=5).text
