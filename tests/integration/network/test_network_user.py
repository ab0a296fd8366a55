"""User networks: DNS by name and alias, forwarding, several networks, --internal,
container: mode, refusals, and reconcile after kill -9."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import pytest

from ketch.engine import networks
from ketch.errors import Conflict, InvalidArgument
from ketch.network import host, ipam, link, nft, store
from tests.conftest import command
from tests.integration.network.conftest import BUSYBOX

CID_A, CID_B, CID_C = "a" * 64, "b" * 64, "c" * 64
REQ = "GET / HTTP/1.0\r\n\r\n"
TCP_QUERY = """
import socket, struct, sys
name = sys.argv[1].encode()
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + bytes([len(name)]) + name + b"\\0" \\
    + struct.pack("!HH", 1, 1)
s = socket.create_connection(("127.0.0.11", 53), timeout=3)
s.sendall(struct.pack("!H", len(q)) + q)
n = struct.unpack("!H", s.recv(2))[0]
r = b""
while len(r) < n:
    r += s.recv(n - len(r))
print(socket.inet_ntoa(r[-4:]))
"""
PEER_ECHO = """
import socket, sys
s = socket.socket(); s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen()
c, peer = s.accept(); c.sendall(peer[0].encode() + b"\\n"); c.close()
"""


def _listen(box, port: int, reply: str):
    p = box.spawn(BUSYBOX, "nc", "-l", "-p", str(port), "-e", BUSYBOX, "echo", reply)
    for _ in range(100):
        if box.sh(f"{BUSYBOX} netstat -ltn | grep -q ':{port} '").returncode == 0:
            return p
        threading.Event().wait(0.05)
    raise AssertionError("listener did not start")


def _fake_upstream():
    """A DNS server on the host's 127.0.0.1 answering every A query with 10.123.0.9."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                q, peer = s.recvfrom(512)
            except TimeoutError:
                continue
            end = q.index(b"\0", 12) + 5
            head = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00"
            ans = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("10.123.0.9")
            s.sendto(head + q[12:end] + ans, peer)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return s, stop, t


def test_containers_talk_by_name_and_alias(conn, boxes):
    net = networks.create(conn, f"app{os.environ['KETCH_TEST_ID'][:6]}")
    a, b = boxes("a"), boxes("b")
    upstream, stop, thread = _fake_upstream()
    try:
        sa = networks.attach(conn, CID_A, net["Name"], a.netns,
                             a.opts(name="db", aliases=["database"]))
        networks.attach(conn, CID_B, net["Name"], b.netns,
                        b.opts(name="web", dns=[f"127.0.0.1:{upstream.getsockname()[1]}"]))
        assert b.run(BUSYBOX, "cat", "/etc/resolv.conf").stdout.startswith(
            "nameserver 127.0.0.11")
        listener = _listen(a, 5432, "pong")
        # TCP by name and by alias, resolved through /etc/resolv.conf -> 127.0.0.11.
        for name in ("db", "database", CID_A[:12]):
            r = b.run(BUSYBOX, "nc", "-w", "3", name, "5432", input="ping\n")
            assert r.stdout == "pong\n", (name, r.stderr)
            if name != CID_A[:12]:
                listener = _listen(a, 5432, "pong")
        listener.kill()
        ip_a = sa["Networks"][net["Name"]]["IPAddress"]
        for name in ("database", f"db.{net['Name']}"):
            assert ip_a in b.run(BUSYBOX, "nslookup", name, "127.0.0.11").stdout, name
        # The same over TCP (large answers and some resolvers use it).
        r = b.run(sys.executable, "-c", TCP_QUERY, "db")
        assert r.stdout.strip() == ip_a, r.stderr
        # Other names go to the upstream (here a fake one on the host's loopback).
        out = b.run(BUSYBOX, "nslookup", "example.test", "127.0.0.11").stdout
        assert "10.123.0.9" in out
        # A name on no shared network is not ours: it is forwarded, not answered.
        networks.detach(conn, CID_A)
        out = b.run(BUSYBOX, "nslookup", "db", "127.0.0.11").stdout
        assert ip_a not in out
    finally:
        stop.set()
        thread.join()
        upstream.close()
    networks.detach(conn, CID_B)
    with pytest.raises(Conflict, match="already exists"):
        networks.create(conn, net["Name"])
    networks.rm(conn, net["Name"])
    assert not link.exists(host.bridge_name(net["Id"]))


def test_several_networks_and_refusals(conn, boxes):
    tid = os.environ["KETCH_TEST_ID"][:6]
    n1 = networks.create(conn, f"front{tid}", subnet="10.214.0.0/24",
                         options={"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    named = host.bridge_prefix() + "named"
    n2 = networks.create(conn, f"back{tid}", subnet="10.214.1.0/24", ip_range="10.214.1.128/25",
                         options={"com.docker.network.bridge.name": named})
    assert link.exists(named)
    with pytest.raises(Conflict, match="already in use"):
        networks.create(conn, f"x{tid}", options={"com.docker.network.bridge.name": named})
    with pytest.raises(Conflict, match=f"10.214.0.0/16 overlaps 10.214.0.0/24 .*front{tid}"):
        networks.create(conn, f"x{tid}", subnet="10.214.0.0/16")
    with pytest.raises(InvalidArgument, match="'10.214.9.1/24'"):
        networks.create(conn, f"x{tid}", subnet="10.214.9.1/24")
    dev, route = next((d, r) for d, r in ipam.host_routes() if not d.startswith("k"))
    with pytest.raises(Conflict, match=f"overlaps {route} \\(route on {dev}\\)"):
        networks.create(conn, f"x{tid}", subnet=str(route))
    assert store.find_network(conn, f"x{tid}") is None
    a, b = boxes("a"), boxes("b")
    sa = networks.attach(conn, CID_A, n1["Name"], a.netns,
                         a.opts(name="a", ip="10.214.0.50", ports=["80"]))
    assert sa["Ports"]["80/tcp"][0]["HostIp"] == "127.0.0.1"  # the network's default
    networks.attach(conn, CID_B, n2["Name"], b.netns, b.opts(name="b"))
    assert "10.214.0.50" in a.sh(f"{BUSYBOX} ip -4 addr show eth0").stdout
    # Different networks are isolated from each other.
    _listen(b, 7000, "hi")
    ip_b = store.endpoints(conn, container_id=CID_B)[0]["ip"]
    assert ip_b.startswith("10.214.1.") and int(ip_b.rsplit(".", 1)[1]) >= 128
    assert a.run(BUSYBOX, "nc", "-w", "2", ip_b, "7000", input="").stdout != "hi\n"
    # Connect a to the second network: eth1, and b's name now resolves for a.
    networks.connect(conn, n2["Name"], "a", {"aliases": ["alpha"]})
    assert "eth1" in a.sh(f"{BUSYBOX} ip link").stdout
    assert a.run(BUSYBOX, "nc", "-w", "3", "b", "7000", input="").stdout == "hi\n"
    assert "10.214.1." in b.run(BUSYBOX, "nslookup", "alpha", "127.0.0.11").stdout
    with pytest.raises(Conflict, match="already exists in network"):
        networks.connect(conn, n2["Name"], CID_A)
    with pytest.raises(Conflict, match="active endpoints"):
        networks.rm(conn, n2["Name"])
    inspect = networks.inspect(conn, n2["Name"])
    assert set(inspect["Containers"]) == {CID_A, CID_B}
    networks.disconnect(conn, n2["Name"], CID_A)
    assert "eth1" not in a.sh(f"{BUSYBOX} ip link").stdout
    with pytest.raises(Conflict, match="not connected"):
        networks.disconnect(conn, n2["Name"], CID_A)
    # container: mode shares a's namespace and files.
    s = networks.attach(conn, CID_C, "container:a", f"/proc/{a.pid}/ns/net", {})
    assert s["hosts"] == store.sandbox(conn, CID_A)["hosts"]
    assert networks.netns_of(conn, "a") == a.netns
    for cid in (CID_A, CID_B, CID_C):
        networks.detach(conn, cid)
    assert sorted(networks.prune(conn)) == sorted([n1["Name"], n2["Name"]])


def test_internal_network_has_no_way_out(conn, boxes):
    tid = os.environ["KETCH_TEST_ID"][:6]
    inside = networks.create(conn, f"int{tid}", internal=True)
    normal = networks.create(conn, f"ext{tid}")
    a, b = boxes("a"), boxes("b")
    si = networks.attach(conn, CID_A, inside["Name"], a.netns, a.opts())
    networks.attach(conn, CID_B, normal["Name"], b.netns, b.opts())
    assert si["Gateway"] == ""
    assert "default" not in a.sh(f"{BUSYBOX} ip route").stdout
    assert "default" in b.sh(f"{BUSYBOX} ip route").stdout
    # "Outside": a namespace of ours behind a plain veth, reached only by routing.
    out = boxes("out")
    x = int(tid, 16) % 250
    outside = _outside_link(out, f"kx{tid}", f"10.199.{x}")
    try:
        # The outside sees the host's address, not the container's: masqueraded egress.
        out.spawn(sys.executable, "-c", PEER_ECHO, "7100")
        for _ in range(100):
            if out.sh(f"{BUSYBOX} netstat -ltn | grep -q ':7100 '").returncode == 0:
                break
            threading.Event().wait(0.05)
        r = b.run(BUSYBOX, "nc", "-w", "3", outside, "7100", input="")
        assert r.stdout == f"10.199.{x}.1\n", r.stderr
        # Even with a default route added by hand, the table drops the internal egress.
        gw_a = inside["IPAM"]["Config"][0]["Gateway"]
        a.sh(f"{BUSYBOX} ip route add default via {gw_a}", check=True)
        _listen(out, 7101, "outside")
        r = a.run(BUSYBOX, "nc", "-w", "2", outside, "7101", input="")
        assert r.stdout != "outside\n"
    finally:
        link.delete(f"kx{tid}")
    networks.detach(conn, CID_A)
    networks.detach(conn, CID_B)
    networks.rm(conn, inside["Id"])
    networks.rm(conn, normal["Id"][:12])


def _outside_link(box, name: str, prefix: str) -> str:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=idx, address=f"{prefix}.1", prefixlen=30)
        ipr.link("set", index=idx, state="up")
        fd = os.open(box.netns, os.O_RDONLY)
        ipr.link("set", index=ipr.link_lookup(ifname=name + "p")[0], net_ns_fd=fd)
        os.close(fd)
    with IPRoute(netns=box.netns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=name + "p")[0]
        ipr.addr("add", index=idx, address=f"{prefix}.2", prefixlen=30)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=f"{prefix}.1")
    return f"{prefix}.2"


def test_reconcile_after_kill_9(conn, boxes):
    tid = os.environ["KETCH_TEST_ID"][:6]
    net = networks.create(conn, f"rc{tid}")
    a, b, c = boxes("a"), boxes("b"), boxes("c")
    networks.attach(conn, CID_A, net["Name"], a.netns, a.opts(name="a", ports=["80"]))
    networks.attach(conn, CID_B, "bridge", b.netns, b.opts())
    networks.attach(conn, CID_C, net["Name"], c.netns, c.opts(name="c"))
    dns_pid = store.sandbox(conn, CID_A)["dns_pid"]
    # A DNS server whose container dies exits by itself (it watches a pidfd).
    dns_c = store.sandbox(conn, CID_C)["dns_pid"]
    c.kill()
    for _ in range(100):
        if not host.is_dns_process(dns_c):
            break
        threading.Event().wait(0.05)
    assert not host.is_dns_process(dns_c)
    veth_b = store.endpoints(conn, container_id=CID_B)[0]["veth"]
    # kill -9 of everything: the containers and the DNS server. Nobody calls detach.
    os.kill(dns_pid, signal.SIGKILL)
    a.kill()
    b.kill()
    # The next ketch command cleans up (here `network ls`), and then nothing is left to do.
    subprocess.run([command("ketch"), "network", "ls"], check=True, capture_output=True)
    assert networks.reconcile(conn) == {"containers": [], "veths": [], "bridges": []}
    assert store.sandbox(conn, CID_C) is None
    assert store.sandboxes(conn) == [] and store.endpoints(conn) == []
    assert not host.is_dns_process(dns_pid)
    assert not link.exists(veth_b) and not link.exists(host.default_bridge_name())
    assert link.exists(host.bridge_name(net["Id"]))  # the network itself survives
    live = subprocess.run(["nft", "list", "table", "ip", host.table_name()],
                          capture_output=True, text=True, check=True).stdout
    assert "dnat to" not in live and "masquerade" in live
    networks.rm(conn, net["Name"])
    assert not nft.exists(host.table_name())
