"""Netlink work: bridges, veth pairs, addresses, routes.

No `ip` command is run, and no pyroute2 either: ketch.network.rtnl speaks
the few rtnetlink requests needed (importing pyroute2 cost every default
`ketch run` ~0.6 s). Inside a container's namespace the netlink socket is
opened in that namespace, so this process's own namespace never changes.

The only sysctls written are on ketch's own bridges (route_localnet, so
that 127.0.0.1 can be DNATed to a container) and net.ipv4.ip_forward,
which routed egress needs; ip_forward is set when a non-internal bridge
network is brought up and is never reset (other software may rely on it).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ketch.errors import FailedPrecondition, KetchError

if TYPE_CHECKING:
    from ketch.network.rtnl import Rtnl

DEFAULT_MTU = 1500


@contextlib.contextmanager
def _netlink(what: str, netns: str | None = None) -> Iterator[Rtnl]:
    from ketch.network.rtnl import Rtnl

    try:
        with Rtnl(netns) as ipr:
            yield ipr
    except OSError as exc:
        if isinstance(exc, KetchError):
            raise
        raise FailedPrecondition(f"{what}: {exc.strerror or exc}") from exc


def exists(name: str) -> bool:
    """Is there a link `name` in the host's namespace? (sysfs: no netlink import needed)"""
    return bool(name) and "/" not in name and os.path.isdir(f"/sys/class/net/{name}")


def write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise FailedPrecondition(f"set {path} to {value}: {exc.strerror or exc}") from exc


def enable_forwarding() -> None:
    """net.ipv4.ip_forward=1: containers' egress is routed through the host."""
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        if f.read().strip() == "1":
            return
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = DEFAULT_MTU) -> None:
    """Create (or adopt) bridge `name` with gateway/prefixlen on it, up."""
    with _netlink(f"create bridge {name!r}") as ipr:
        idx = ipr.index(name)
        if idx is None:
            ipr.add_link(name, "bridge", mtu)
            idx = ipr.index(name)
        if (gateway, prefixlen) not in ipr.addrs(idx):
            ipr.add_addr(idx, gateway, prefixlen)
        ipr.set_link(idx, up=True)
    # Let DNAT of 127.0.0.1 to a container leave through this bridge (and only it).
    write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")


def delete(name: str) -> bool:
    """Delete link `name` (a veth takes its peer with it); False if it was gone."""
    if not exists(name):
        return False  # the usual case after a container's namespace went away
    with _netlink(f"delete link {name!r}") as ipr:
        idx = ipr.index(name)
        if idx is None:
            return False
        try:
            ipr.del_link(idx)
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise
            return False
    return True


def list_links(prefix: str, kind: str | None = None) -> list[str]:
    with _netlink("list links") as ipr:
        return [name for name, lkind in ipr.links()
                if name.startswith(prefix) and (kind is None or lkind == kind)]


def loopback_up(netns: str) -> None:
    with _netlink("bring up lo in the container", netns) as ipr:
        ipr.set_link(ipr.index("lo"), up=True)


def plug(bridge: str, veth: str, netns: str, ifname: str, address: str, prefixlen: int,
         mac: str, gateway: str | None, mtu: int = DEFAULT_MTU) -> None:
    """A veth pair: `veth` on `bridge` in the host, its peer `ifname` in `netns`.

    The peer is created with a temporary name, moved, then renamed, so an
    `eth0` never exists in the host even for a moment. On failure the host
    end is deleted, which takes the peer with it.
    """
    peer = "kp" + veth[2:]
    ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _netlink(f"create veth {veth!r} on {bridge!r}") as ipr:
            br = ipr.index(bridge)
            if br is None:
                raise FailedPrecondition(f"create veth {veth!r}: bridge {bridge!r} is missing")
            ipr.add_link(veth, "veth", mtu, peer=peer)
            try:
                idx = ipr.index(veth)
                ipr.set_link(idx, master=br)
                ipr.set_link(ipr.index(peer), netns_fd=ns_fd)
                ipr.set_link(idx, up=True)
                # With br_netfilter loaded, a container reaching its own published
                # port is bridged back out of the port it came in: allow that.
                write_sysctl(f"/sys/class/net/{veth}/brport/hairpin_mode", "1")
            except BaseException:
                ipr.del_link(ipr.index(veth))
                raise
    finally:
        os.close(ns_fd)
    try:
        _configure_peer(netns, peer, ifname, address, prefixlen, mac, gateway)
    except BaseException:
        delete(veth)
        raise


def _configure_peer(netns: str, peer: str, ifname: str, address: str, prefixlen: int,
                    mac: str, gateway: str | None) -> None:
    with _netlink(f"configure {ifname} in the container", netns) as ipr:
        idx = ipr.index(peer)
        ipr.set_link(idx, name=ifname, mac=mac)
        ipr.add_addr(idx, address, prefixlen)
        ipr.set_link(idx, up=True)
        ipr.set_link(ipr.index("lo"), up=True)
        if gateway:
            ipr.add_default_route(gateway, idx)


def unplug_in_netns(netns: str, ifname: str) -> None:
    """Remove `ifname` from a namespace that is still alive (network disconnect)."""
    with _netlink(f"remove {ifname} from the container", netns) as ipr:
        idx = ipr.index(ifname)
        if idx is not None:
            ipr.del_link(idx)
