"""A minimal rtnetlink client: the dozen requests ketch's networks make.

Links (bridge and veth creation, up, master, move to a namespace, rename,
MAC, delete, lookup, dump), IPv4 addresses (add, dump) and a default route,
spoken directly over an AF_NETLINK socket with struct. pyroute2 does the
same and much more, but importing it costs ~0.6 s (asyncio, ssl,
multiprocessing, unittest.mock), which every `ketch run` on the default
bridge paid; these messages need nothing beyond the standard library.

A socket for another network namespace is opened from inside it (setns on
this thread, socket(), setns back): a netlink socket stays bound to the
namespace it was created in, so nothing else in this process moves.
Errors come back as OSError with the kernel's errno.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
F_REQUEST, F_ACK, F_EXCL, F_CREATE, F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_OIF, RTA_GATEWAY = 4, 5
IFF_UP = 0x1
NLA_F_NESTED = 0x8000

_IFINFO = struct.Struct("=BxHiII")      # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")       # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")    # family, dst_len, src_len, tos, table, proto, scope, type, flags
_HDR = struct.Struct("=IHHII")          # len, type, flags, seq, pid


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def _str(value: str) -> bytes:
    return value.encode() + b"\0"


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """{type: payload} of a run of attributes (nested flag bits dropped)."""
    out, pos = {}, 0
    while pos + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, pos)
        if size < 4:
            break
        out[kind & 0x3FFF] = data[pos + 4:pos + size]
        pos += (size + 3) & ~3
    return out


def _cstr(data: bytes | None) -> str:
    return (data or b"").split(b"\0", 1)[0].decode(errors="replace")


class Rtnl:
    """One rtnetlink socket, in this namespace or in the one at `netns` (a path)."""

    def __init__(self, netns: str | None = None) -> None:
        self.seq = 0
        self.sock = _open(netns)

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, payload) replies (a dump's rows)."""
        self.seq += 1
        flags |= F_REQUEST | F_ACK
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags, self.seq, 0) + body)
        rows = []
        while True:
            data = self.sock.recv(1 << 16)
            pos = 0
            while pos + _HDR.size <= len(data):
                size, mtype, _f, seq, _p = _HDR.unpack_from(data, pos)
                payload = data[pos + _HDR.size:pos + size]
                pos += (size + 3) & ~3
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return rows
                if mtype == NLMSG_DONE:
                    return rows
                rows.append((mtype, payload))

    # -- links --------------------------------------------------------------

    def index(self, name: str) -> int | None:
        """Interface index of `name`, or None when there is no such link."""
        try:
            rows = self.request(RTM_GETLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0)
                                + attr(IFLA_IFNAME, _str(name)))
        except OSError as exc:
            if exc.errno in (19, 22):  # ENODEV, EINVAL (bad name)
                return None
            raise
        return _IFINFO.unpack_from(rows[0][1])[2] if rows else None

    def links(self) -> list[tuple[str, str | None]]:
        """(name, kind) of every link."""
        out = []
        for _t, payload in self.request(RTM_GETLINK, F_DUMP, _IFINFO.pack(0, 0, 0, 0, 0)):
            attrs = parse_attrs(payload[_IFINFO.size:])
            info = parse_attrs(attrs.get(IFLA_LINKINFO, b""))
            kind = _cstr(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
            out.append((_cstr(attrs.get(IFLA_IFNAME)), kind))
        return out

    def add_link(self, name: str, kind: str, mtu: int, peer: str | None = None) -> None:
        """Create a link of `kind` (bridge, veth with `peer`)."""
        info = attr(IFLA_INFO_KIND, _str(kind))
        if peer is not None:
            peer_msg = (_IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _str(peer))
                        + attr(IFLA_MTU, struct.pack("=I", mtu)))
            info += attr(IFLA_INFO_DATA | NLA_F_NESTED, attr(VETH_INFO_PEER | NLA_F_NESTED,
                                                              peer_msg))
        body = (_IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _str(name))
                + attr(IFLA_MTU, struct.pack("=I", mtu))
                + attr(IFLA_LINKINFO | NLA_F_NESTED, info))
        self.request(RTM_NEWLINK, F_CREATE | F_EXCL, body)

    def set_link(self, index: int, *, up: bool = False, master: int | None = None,
                 netns_fd: int | None = None, name: str | None = None,
                 mac: str | None = None) -> None:
        """Change one link: up, bridge master, namespace, name, MAC address."""
        attrs = b""
        if master is not None:
            attrs += attr(IFLA_MASTER, struct.pack("=I", master))
        if netns_fd is not None:
            attrs += attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
        if name is not None:
            attrs += attr(IFLA_IFNAME, _str(name))
        if mac is not None:
            attrs += attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
        flags = IFF_UP if up else 0
        self.request(RTM_NEWLINK, 0, _IFINFO.pack(0, 0, index, flags, flags) + attrs)

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, 0, _IFINFO.pack(0, 0, index, 0, 0))

    # -- addresses and routes -----------------------------------------------

    def addrs(self, index: int) -> set[tuple[str, int]]:
        """{(IPv4 address, prefixlen)} on link `index`."""
        out = set()
        rows = self.request(RTM_GETADDR, F_DUMP, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0))
        for _t, payload in rows:
            _fam, plen, _fl, _sc, idx = _IFADDR.unpack_from(payload)
            attrs = parse_attrs(payload[_IFADDR.size:])
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if idx == index and raw:
                out.add((socket.inet_ntoa(raw), plen))
        return out

    def add_addr(self, index: int, address: str, prefixlen: int) -> None:
        raw = socket.inet_aton(address)
        host_bits = (1 << (32 - prefixlen)) - 1
        brd = struct.pack("!I", struct.unpack("!I", raw)[0] | host_bits)
        body = (_IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
                + attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw) + attr(IFA_BROADCAST, brd))
        self.request(RTM_NEWADDR, F_CREATE | F_EXCL, body)

    def add_default_route(self, gateway: str, oif: int) -> None:
        body = (_RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)  # main, boot, universe, unicast
                + attr(RTA_GATEWAY, socket.inet_aton(gateway))
                + attr(RTA_OIF, struct.pack("=I", oif)))
        self.request(RTM_NEWROUTE, F_CREATE | F_EXCL, body)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


def _open(netns: str | None) -> socket.socket:
    if netns is None:
        return _socket()
    from ketch._sys import ns

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ns.setns(target, ns.CLONE_NEWNET, netns)
        finally:
            os.close(target)
        try:
            return _socket()
        finally:
            try:
                ns.setns(own, ns.CLONE_NEWNET)
            except OSError:   # cannot stay in a container's netns
                os.abort()
    finally:
        os.close(own)
