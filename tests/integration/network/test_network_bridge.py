"""The default bridge: addresses, egress route, published ports (TCP, UDP, -P, hairpin), bad input."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import httpx
import pytest

from ketch.engine import networks
from ketch.errors import Conflict
from ketch.network import host, link, nft, store
from tests.integration.network.conftest import BUSYBOX, free_port, host_address, http_get

CID_A, CID_B = "a" * 64, "b" * 64
UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5300))
while True:
    data, peer = s.recvfrom(100)
    s.sendto(data, peer)
"""


def _httpd(box, tmp_path, text: str, port: int = 80):
    www = tmp_path / f"www-{box.pid}"
    www.mkdir()
    (www / "index.html").write_text(text)
    box.spawn(BUSYBOX, "httpd", "-f", "-p", str(port), "-h", str(www))
    for _ in range(100):
        if box.sh(f"{BUSYBOX} netstat -ltn | grep -q ':{port} '").returncode == 0:
            return
        threading.Event().wait(0.05)
    raise AssertionError("httpd did not start")


def test_default_bridge_publish_and_cleanup(conn, boxes, tmp_path):
    a, b = boxes("a"), boxes("b")
    port = free_port()
    s = networks.attach(conn, CID_A, None, a.netns, a.opts(
        name="web", ports=[f"{port}:80"], hostname="webhost",
        extra_hosts=["gw:host-gateway", "db:10.9.0.1"]))
    assert s["NetworkMode"] == "default"
    assert s["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    ip, gw = s["IPAddress"], s["Gateway"]
    # Inside: eth0 has the lease and the MAC derived from it, default route via the bridge.
    out = a.sh(f"{BUSYBOX} ip -4 addr show eth0; {BUSYBOX} ip route").stdout
    assert f"inet {ip}/{s['IPPrefixLen']}" in out and f"default via {gw}" in out
    assert s["MacAddress"] in a.sh(f"{BUSYBOX} ip link show eth0").stdout
    # The files the engine bind-mounts were written in place and are seen inside.
    hosts = a.run(BUSYBOX, "cat", "/etc/hosts").stdout
    assert f"{ip}\twebhost" in hosts and "10.9.0.1\tdb\n" in hosts and f"{gw}\tgw\n" in hosts
    resolv = a.run(BUSYBOX, "cat", "/etc/resolv.conf").stdout
    assert "nameserver" in resolv and "127.0.0.11" not in resolv

    _httpd(a, tmp_path, "hello from a\n")
    assert http_get(f"http://127.0.0.1:{port}/") == "hello from a\n"
    assert http_get(f"http://{host_address()}:{port}/") == "hello from a\n"

    # Hairpin: another container, and the container itself, through the host's address.
    networks.attach(conn, CID_B, "bridge", b.netns, b.opts())
    req = "GET / HTTP/1.0\r\n\r\n"
    for box in (b, a):
        r = box.run(BUSYBOX, "nc", "-w", "3", host_address(), str(port), input=req)
        assert r.stdout.endswith("hello from a\n"), r.stderr
    # Containers on the default bridge reach each other by address.
    r = b.run(BUSYBOX, "nc", "-w", "3", ip, "80", input=req)
    assert r.stdout.endswith("hello from a\n")

    networks.detach(conn, CID_A)
    networks.detach(conn, CID_A)  # idempotent
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert store.endpoints(conn, container_id=CID_A) == []
    assert link.exists(host.default_bridge_name())  # b still uses it
    networks.detach(conn, CID_B)
    assert not link.exists(host.default_bridge_name())
    assert not nft.exists(host.table_name())


def test_udp_and_publish_all(conn, boxes):
    a = boxes("a")
    uport = free_port(socket.SOCK_DGRAM)
    s = networks.attach(conn, CID_A, "bridge", a.netns, a.opts(
        ports=[f"127.0.0.1:{uport}:5300/udp"], publish_all=True,
        exposed=["8000/tcp", "5301/udp"]))
    p = s["Ports"]
    assert p["5300/udp"] == [{"HostIp": "127.0.0.1", "HostPort": str(uport)}]
    auto = int(p["8000/tcp"][0]["HostPort"])
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert lo <= auto <= hi and p["5301/udp"][0]["HostPort"]
    assert networks.ports(conn, CID_A) == p
    # A UDP echo inside, reached through the published port from the host's loopback.
    echo = a.spawn(sys.executable, "-c", UDP_ECHO)
    for _ in range(100):
        if a.sh(f"{BUSYBOX} netstat -lun | grep -q ':5300 '").returncode == 0:
            break
        threading.Event().wait(0.05)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(3)
        c.sendto(b"ping\n", ("127.0.0.1", uport))
        assert c.recvfrom(100)[0] == b"ping\n"
    echo.kill()
    # -P port over TCP: a listener behind it answers.
    srv = a.spawn(BUSYBOX, "nc", "-l", "-p", "8000", "-e", BUSYBOX, "echo", "tcp-ok")
    for _ in range(100):
        if a.sh(f"{BUSYBOX} netstat -ltn | grep -q ':8000 '").returncode == 0:
            break
        threading.Event().wait(0.05)
    with socket.create_connection(("127.0.0.1", auto), timeout=3) as c:
        assert c.recv(100) == b"tcp-ok\n"
    srv.kill()
    networks.detach(conn, CID_A)


def test_port_in_use_leaves_nothing(conn, boxes):
    a = boxes("a")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(Conflict, match=f"0.0.0.0:{port}/tcp.*in use"):
            networks.attach(conn, CID_A, "bridge", a.netns, a.opts(ports=[f"{port}:80"]))
    finally:
        holder.close()
    assert store.sandbox(conn, CID_A) is None and store.endpoints(conn) == []
    assert not [n for n in link.list_links(host.veth_prefix())]
    assert not link.exists(host.default_bridge_name())
    assert not nft.exists(host.table_name())
    assert "eth0" not in a.sh(f"{BUSYBOX} ip link").stdout
    # The same port twice among ketch containers: the second is refused.
    b = boxes("b")
    port = free_port()
    networks.attach(conn, CID_A, "bridge", a.netns, a.opts(ports=[f"{port}:80"]))
    with pytest.raises(Conflict, match="already allocated"):
        networks.attach(conn, CID_B, "bridge", b.netns, b.opts(ports=[f"{port}:81"]))
    assert store.sandbox(conn, CID_B) is None
    networks.detach(conn, CID_A)


def test_none_and_host_modes(conn, boxes):
    a = boxes("a")
    s = networks.attach(conn, CID_A, "none", a.netns, a.opts())
    assert s["Networks"] == {"none": {"NetworkID": "", "EndpointID": "", "IPAddress": "",
                                      "IPPrefixLen": 0, "Gateway": "", "MacAddress": ""}}
    out = a.sh(f"{BUSYBOX} ip -o link").stdout
    assert "lo:" in out and "UP" in out and "eth0" not in out
    with pytest.raises(Conflict, match="none and bridge"):
        networks.connect(conn, "bridge", CID_A)
    networks.detach(conn, CID_A)
    s = networks.attach(conn, CID_B, "host", None, {})
    assert s["NetworkMode"] == "host"
    with open("/etc/resolv.conf") as f:
        host_ns = [ln for ln in f if ln.startswith("nameserver") and "127." not in ln]
    assert all(ln in s["resolv_conf"] for ln in host_ns)
    networks.detach(conn, CID_B)
    assert store.sandboxes(conn) == []


def test_nothing_runs_ip_command(conn, boxes, monkeypatch):
    """The engine path uses netlink, not `ip`: fail loudly if anything execs it."""
    real = subprocess.Popen.__init__

    def guard(self, args, *a, **kw):
        argv = [args] if isinstance(args, str) else list(args)
        assert not str(argv[0]).endswith("/ip") and argv[0] != "ip", argv
        real(self, args, *a, **kw)

    a = boxes("a")
    monkeypatch.setattr(subprocess.Popen, "__init__", guard)
    networks.attach(conn, CID_A, "bridge", a.netns, a.opts())
    networks.detach(conn, CID_A)
