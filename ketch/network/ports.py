"""Published ports: -p/-P parsing, host port checks and allocation.

A binding is {"proto", "host_ip", "host_port", "container_port"}. Docker's
forms are accepted: `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`,
`8000-8001:80-81`, `8000-8010:80` (any free port of the range), `/udp`.

ketch publishes with nftables DNAT, not a userland proxy, so nothing holds
the host port: a port counts as in use when a host socket is bound to it
(checked by binding it, briefly) or another ketch container publishes it.
The default host address is 0.0.0.0; the setting KETCH_PUBLISH_IP (e.g.
127.0.0.1), or a network's `-o com.docker.network.bridge.host_binding_ipv4=`
option, changes it, so that ports are not exposed to the network unless an
address is given explicitly.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable

from ketch.errors import Conflict, InvalidArgument, Unavailable

PROTOS = ("tcp", "udp")


def default_host_ip() -> str:
    return os.environ.get("KETCH_PUBLISH_IP") or "0.0.0.0"


def _range(text: str, spec: str, what: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidArgument(f"invalid publish spec {spec!r}: bad {what} {text!r}") from None
    if not (0 < a <= b <= 65535):
        raise InvalidArgument(f"invalid publish spec {spec!r}: {what} {text!r} out of range")
    return a, b


def parse(spec: str, host_ip: str | None = None) -> list[dict]:
    """One -p value -> bindings (host_port 0: allocate; `host_range`: pick within)."""
    body, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid publish spec {spec!r}: unknown protocol {proto!r}")
    ip, hostp, contp = "", "", body
    if body.count(":") == 1:
        hostp, contp = body.split(":")
    elif body.count(":") == 2:
        ip, hostp, contp = body.split(":")
    elif body.count(":") > 2:
        raise InvalidArgument(f"invalid publish spec {spec!r}: IPv6 host addresses "
                              "are not supported")
    ip = ip.strip("[]") or host_ip or default_host_ip()
    try:
        if ipaddress.ip_address(ip).version != 4:
            raise ValueError
    except ValueError:
        raise InvalidArgument(f"invalid publish spec {spec!r}: bad host address {ip!r}") from None
    c_lo, c_hi = _range(contp, spec, "container port")
    if not hostp:
        return [_b(proto, ip, 0, p) for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _range(hostp, spec, "host port")
    if c_lo == c_hi and h_hi > h_lo:
        return [dict(_b(proto, ip, 0, c_lo), host_range=[h_lo, h_hi])]
    if h_hi - h_lo != c_hi - c_lo:
        raise InvalidArgument(f"invalid publish spec {spec!r}: host and container "
                              "port ranges differ in size")
    return [_b(proto, ip, h_lo + i, c_lo + i) for i in range(c_hi - c_lo + 1)]


def _b(proto: str, ip: str, host_port: int, container_port: int) -> dict:
    return {"proto": proto, "host_ip": ip, "host_port": host_port,
            "container_port": container_port}


def exposed_bindings(exposed: Iterable[str], host_ip: str | None = None) -> list[dict]:
    """-P: every EXPOSEd port ("80", "80/tcp", "53/udp") to a free high port."""
    out = []
    for item in exposed:
        port, _, proto = str(item).partition("/")
        out += parse(f"{port}/{proto or 'tcp'}", host_ip)
    return out


def host_port_free(proto: str, ip: str, port: int) -> bool:
    """True if no host socket holds ip:port (bind, then close at once)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((ip, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"cannot publish on {ip}:{port}: the host has no "
                                      f"address {ip}") from None
            raise
    return True


def _clash(b: dict, taken: Iterable[dict]) -> bool:
    """Same proto and port on the same address, or either side on 0.0.0.0."""
    for t in taken:
        if t["proto"] != b["proto"] or t["host_port"] != b["host_port"]:
            continue
        if t["host_ip"] == b["host_ip"] or "0.0.0.0" in (t["host_ip"], b["host_ip"]):
            return True
    return False


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def resolve(bindings: list[dict], taken: list[dict]) -> list[dict]:
    """Fix every host port: check the given ones, allocate the others; raise on conflict."""
    out: list[dict] = []
    for b in bindings:
        b = dict(b)
        rng = b.pop("host_range", None)
        if b["host_port"]:
            where = f"{b['host_ip']}:{b['host_port']}/{b['proto']}"
            if _clash(b, taken + out):
                raise Conflict(f"cannot publish {where}: port is already allocated")
            if not host_port_free(b["proto"], b["host_ip"], b["host_port"]):
                raise Conflict(f"cannot publish {where}: address already in use")
        else:
            lo, hi = rng or ephemeral_range()
            b["host_port"] = _first_free(b, lo, hi, taken + out)
        out.append(b)
    return out


def _first_free(b: dict, lo: int, hi: int, taken: list[dict]) -> int:
    for port in range(lo, hi + 1):
        cand = dict(b, host_port=port)
        if not _clash(cand, taken) and host_port_free(b["proto"], b["host_ip"], port):
            return port
    raise Unavailable(f"no free host port in {lo}-{hi} for {b['container_port']}/{b['proto']}")


def docker_ports(bindings: list[dict], exposed: Iterable[str] = ()) -> dict:
    """NetworkSettings.Ports: {"80/tcp": [{"HostIp", "HostPort"}]}, unpublished -> None."""
    out: dict = {}
    for item in exposed:
        port, _, proto = str(item).partition("/")
        out.setdefault(f"{port}/{proto or 'tcp'}", None)
    for b in bindings:
        key = f"{b['container_port']}/{b['proto']}"
        out[key] = (out.get(key) or []) + [{"HostIp": b["host_ip"],
                                            "HostPort": str(b["host_port"])}]
    return out
