"""IPAM and -p parsing: pure policy, no root."""

from __future__ import annotations

import ipaddress

import pytest

from ketch.errors import Conflict, InvalidArgument, Unavailable
from ketch.network import ipam, ports

N = ipaddress.IPv4Network


def test_parse_subnet_names_the_bad_value():
    assert ipam.parse_subnet("10.5.0.0/16") == N("10.5.0.0/16")
    with pytest.raises(InvalidArgument, match="'10.5.0.1/16'.*10.5.0.0/16"):
        ipam.parse_subnet("10.5.0.1/16")
    with pytest.raises(InvalidArgument, match="'nonsense'"):
        ipam.parse_subnet("nonsense")
    with pytest.raises(InvalidArgument, match="IPv4"):
        ipam.parse_subnet("fd00::/64")


def test_overlap_names_both_sides():
    taken = [("network web", N("10.1.0.0/16")), ("route on eth0", N("192.0.2.0/24"))]
    with pytest.raises(Conflict, match=r"10.1.2.0/24 overlaps 10.1.0.0/16 \(network web\)"):
        ipam.check_free(N("10.1.2.0/24"), taken)
    with pytest.raises(Conflict, match="eth0"):
        ipam.check_free(N("192.0.0.0/16"), taken)
    with pytest.raises(Conflict, match="DNS server 10.9.9.9"):
        ipam.check_free(N("10.9.0.0/16"), [], ["10.9.9.9"])


def test_pick_subnet_skips_what_is_taken():
    taken = [("route on docker0", N("172.18.0.0/16")), ("x", N("172.19.5.0/24"))]
    assert ipam.pick_subnet(taken) == N("172.20.0.0/16")
    with pytest.raises(Unavailable):
        ipam.pick_subnet([("all", N("0.0.0.0/0"))])


def test_host_routes_parses_proc_format(tmp_path):
    f = tmp_path / "route"
    f.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert ipam.host_routes(str(f)) == [("eth0", N("192.0.2.0/24"))]


def test_allocate_lowest_free_and_requested():
    sub, gw = N("10.3.0.0/29"), ipaddress.IPv4Address("10.3.0.1")
    assert str(ipam.allocate(sub, gw, set())) == "10.3.0.2"
    assert str(ipam.allocate(sub, gw, {"10.3.0.2", "10.3.0.3"})) == "10.3.0.4"
    assert str(ipam.allocate(sub, gw, set(), requested="10.3.0.6")) == "10.3.0.6"
    with pytest.raises(Conflict, match="10.3.0.2 is already in use"):
        ipam.allocate(sub, gw, {"10.3.0.2"}, requested="10.3.0.2")
    with pytest.raises(InvalidArgument, match="10.4.0.9"):
        ipam.allocate(sub, gw, set(), requested="10.4.0.9")
    with pytest.raises(Unavailable):
        ipam.allocate(sub, gw, {f"10.3.0.{i}" for i in range(2, 7)})
    rng = N("10.3.0.4/30")
    assert str(ipam.allocate(sub, gw, set(), ip_range=rng)) == "10.3.0.5"


def test_mac_follows_docker_scheme():
    assert ipam.mac_for(ipaddress.IPv4Address("172.18.0.2")) == "02:42:ac:12:00:02"
    assert ipam.parse_mac("02:AA:bb:cc:dd:ee") == "02:aa:bb:cc:dd:ee"
    with pytest.raises(InvalidArgument):
        ipam.parse_mac("01:00:5e:00:00:01")
    with pytest.raises(InvalidArgument):
        ipam.parse_mac("zz:00")


@pytest.mark.parametrize("spec,expected", [
    ("80", [("tcp", "0.0.0.0", 0, 80)]),
    ("8080:80", [("tcp", "0.0.0.0", 8080, 80)]),
    ("127.0.0.1:5353:53/udp", [("udp", "127.0.0.1", 5353, 53)]),
    ("127.0.0.1::80", [("tcp", "127.0.0.1", 0, 80)]),
    ("9000-9001:90-91", [("tcp", "0.0.0.0", 9000, 90), ("tcp", "0.0.0.0", 9001, 91)]),
])
def test_publish_forms(spec, expected, monkeypatch):
    monkeypatch.delenv("KETCH_PUBLISH_IP", raising=False)
    got = [(b["proto"], b["host_ip"], b["host_port"], b["container_port"])
           for b in ports.parse(spec)]
    assert got == expected


def test_publish_default_address_setting(monkeypatch):
    monkeypatch.setenv("KETCH_PUBLISH_IP", "127.0.0.1")
    assert ports.parse("8080:80")[0]["host_ip"] == "127.0.0.1"
    assert ports.parse("0.0.0.0:8080:80")[0]["host_ip"] == "0.0.0.0"


@pytest.mark.parametrize("spec,word", [
    ("80/sctp", "protocol"), ("1-3:80-81", "differ"), ("x:80", "host port"),
    ("8080:70000", "out of range"), ("300.1.1.1:80:80", "host address"),
])
def test_publish_rejects(spec, word):
    with pytest.raises(InvalidArgument, match=word):
        ports.parse(spec)


def test_resolve_detects_clash_with_other_containers():
    taken = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80}]
    with pytest.raises(Conflict, match="0.0.0.0:8080/tcp"):
        ports.resolve(ports.parse("0.0.0.0:8080:80"), taken)
    with pytest.raises(Conflict, match="127.0.0.1:8080"):
        ports.resolve(ports.parse("127.0.0.1:8080:80"), taken)
    # Same port, other protocol: fine (the UDP port is free on any host).
    ok = ports.resolve(ports.parse("127.0.0.1:8080:80/udp"), taken)
    assert ok[0]["host_port"] == 8080


def test_docker_ports_shape():
    b = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80}]
    assert ports.docker_ports(b, ["80/tcp", "443"]) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}
