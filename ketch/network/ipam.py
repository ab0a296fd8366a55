"""IPv4 address management: subnets, the default pool, and address leases.

A network's subnet is either given (--subnet, checked against the host's
routes, the host's resolvers and the other networks) or taken from the pool:
the first /16 of 172.18.0.0 .. 172.31.0.0 (172.17.0.0/16 is left to Docker's
docker0) and then 10.210.0.0 .. 10.219.0.0, that collides with nothing. A
lease is a row in `endpoints` (UNIQUE per network), so choosing an address
and recording it happen in one transaction under the host lock.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

from ketch.errors import Conflict, InvalidArgument, Unavailable

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

POOL = [f"172.{n}.0.0/16" for n in range(18, 32)] + [f"10.{n}.0.0/16" for n in range(210, 220)]


def parse_subnet(text: str) -> IPv4Network:
    """'10.5.0.0/16' -> network; malformed or with host bits set -> InvalidArgument."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text!r}: not an IPv4 CIDR") from None
    if net.version != 4:
        raise InvalidArgument(f"invalid subnet {text!r}: only IPv4 is supported")
    if str(net) != text.strip():
        raise InvalidArgument(f"invalid subnet {text!r}: it should be {net}")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text!r}: prefix longer than /30 leaves no room")
    return net


def parse_address(text: str, what: str = "IP address") -> IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}") from None
    if addr.version != 4:
        raise InvalidArgument(f"invalid {what} {text!r}: only IPv4 is supported")
    return addr


def host_routes(path: str = "/proc/net/route") -> list[tuple[str, IPv4Network]]:
    """(device, destination) of the host's IPv4 routes, the default route excluded."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<I", int(fields[7], 16)))
        if mask == "0.0.0.0":
            continue
        out.append((fields[0], IPv4Network(f"{dest}/{mask}", strict=False)))
    return out


def check_free(subnet: IPv4Network, taken: Iterable[tuple[str, IPv4Network]],
               resolvers: Iterable[str] = ()) -> None:
    """Raise Conflict naming what `subnet` overlaps: a route, a network, a resolver."""
    for owner, net in taken:
        if subnet.overlaps(net):
            raise Conflict(f"subnet {subnet} overlaps {net} ({owner})")
    for addr in resolvers:
        try:
            if ipaddress.ip_address(addr) in subnet:
                raise Conflict(f"subnet {subnet} contains the host's DNS server {addr}")
        except ValueError:
            continue


def pick_subnet(taken: list[tuple[str, IPv4Network]], resolvers: Iterable[str] = (),
                pool: Iterable[str] = POOL) -> IPv4Network:
    """The first pool subnet that collides with nothing."""
    resolvers = list(resolvers)
    for cand in pool:
        net = IPv4Network(cand)
        try:
            check_free(net, taken, resolvers)
        except Conflict:
            continue
        return net
    raise Unavailable("no free subnet left in the default address pool; use --subnet")


def default_gateway(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def check_gateway(subnet: IPv4Network, gateway: IPv4Address) -> None:
    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"gateway {gateway} is not a usable address of subnet {subnet}")


def parse_ip_range(text: str, subnet: IPv4Network) -> IPv4Network:
    rng = parse_subnet(text) if "/" in text else None
    if rng is None:
        raise InvalidArgument(f"invalid ip-range {text!r}: not an IPv4 CIDR")
    if not rng.subnet_of(subnet):
        raise InvalidArgument(f"ip-range {rng} is not inside subnet {subnet}")
    return rng


def allocate(subnet: IPv4Network, gateway: IPv4Address, used: set[str],
             ip_range: IPv4Network | None = None, requested: str | None = None) -> IPv4Address:
    """An address for a new endpoint: `requested` if valid and free, else the lowest free."""
    reserved = {subnet.network_address, subnet.broadcast_address, gateway}
    if requested:
        addr = parse_address(requested)
        if addr not in subnet or addr in reserved:
            raise InvalidArgument(f"address {addr} is not a usable address of subnet {subnet}")
        if str(addr) in used:
            raise Conflict(f"address {addr} is already in use on subnet {subnet}")
        return addr
    for addr in (ip_range or subnet).hosts():
        if addr not in reserved and str(addr) not in used:
            return addr
    raise Unavailable(f"no free address left in {ip_range or subnet}")


def mac_for(addr: IPv4Address) -> str:
    """Docker's scheme: 02:42 followed by the four bytes of the address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


def parse_mac(text: str) -> str:
    parts = text.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise InvalidArgument(f"invalid MAC address {text!r}")
    if int(parts[0], 16) & 1:
        raise InvalidArgument(f"invalid MAC address {text!r}: multicast bit set")
    return ":".join(parts)
