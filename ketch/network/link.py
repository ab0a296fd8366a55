"""Netlink work through pyroute2: bridges, veth pairs, addresses, routes.

No `ip` command is run. Inside a container's namespace pyroute2 opens its
netlink socket in that namespace (IPRoute(netns=path)), so this process
never changes its own namespace.

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

from ketch.errors import FailedPrecondition, KetchError

DEFAULT_MTU = 1500
_LOADED: list = []


def _pyroute2():
    """(IPRoute, NetlinkError), loading only the rtnetlink part of pyroute2.

    pyroute2's package __init__ imports every protocol it knows (wireless,
    ipvs, ndb, ...): ~0.3 s that `ketch run` would pay for nothing. Its
    submodules only need the package's path, so a bare package object stands
    in while they load, and is removed afterwards: a later `import pyroute2`
    elsewhere runs the real __init__ over the same, already loaded modules.
    """
    import sys

    if _LOADED:
        return _LOADED[0]
    if "pyroute2" not in sys.modules:
        import importlib.util
        import types

        spec = importlib.util.find_spec("pyroute2")
        bare = types.ModuleType("pyroute2")
        bare.__path__ = list(spec.submodule_search_locations or [])
        sys.modules["pyroute2"] = bare
        try:
            from pyroute2.iproute.linux import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError
            _LOADED.append((IPRoute, NetlinkError))
            return _LOADED[0]
        except ImportError:
            pass  # a layout we do not know: fall back to the full package
        finally:
            if sys.modules.get("pyroute2") is bare:
                del sys.modules["pyroute2"]
    from pyroute2 import IPRoute, NetlinkError

    _LOADED.append((IPRoute, NetlinkError))
    return _LOADED[0]


def _ipr(netns: str | None = None):
    IPRoute = _pyroute2()[0]  # noqa: N806 - a class

    if netns is None:
        return IPRoute()
    return IPRoute(netns=netns, flags=0)


@contextlib.contextmanager
def _netlink(what: str, netns: str | None = None) -> Iterator:
    NetlinkError = _pyroute2()[1]  # noqa: N806 - a class

    try:
        with _ipr(netns) as ipr:
            yield ipr
    except NetlinkError as exc:
        raise FailedPrecondition(f"{what}: {os.strerror(exc.code)}") from exc
    except OSError as exc:
        if isinstance(exc, KetchError):
            raise
        raise FailedPrecondition(f"{what}: {exc.strerror or exc}") from exc


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


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
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            idx = _index(ipr, name)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx)}
        if (gateway, prefixlen) not in have:
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
    # Let DNAT of 127.0.0.1 to a container leave through this bridge (and only it).
    write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")


def delete(name: str) -> bool:
    """Delete link `name` (a veth takes its peer with it); False if it was gone."""
    if not exists(name):
        return False  # the usual case after a container's namespace went away
    NetlinkError = _pyroute2()[1]  # noqa: N806 - a class

    with _netlink(f"delete link {name!r}") as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
            return False
    return True


def list_links(prefix: str, kind: str | None = None) -> list[str]:
    with _netlink("list links") as ipr:
        out = []
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            info = link.get_attr("IFLA_LINKINFO")
            lkind = info.get_attr("IFLA_INFO_KIND") if info else None
            if name.startswith(prefix) and (kind is None or lkind == kind):
                out.append(name)
        return out


def loopback_up(netns: str) -> None:
    with _netlink("bring up lo in the container", netns) as ipr:
        ipr.link("set", index=_index(ipr, "lo"), state="up")


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
            br = _index(ipr, bridge)
            if br is None:
                raise FailedPrecondition(f"create veth {veth!r}: bridge {bridge!r} is missing")
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": peer, "mtu": mtu},
                     mtu=mtu)
            try:
                idx = _index(ipr, veth)
                ipr.link("set", index=idx, master=br)
                ipr.link("set", index=_index(ipr, peer), net_ns_fd=ns_fd)
                ipr.link("set", index=idx, state="up")
                # With br_netfilter loaded, a container reaching its own published
                # port is bridged back out of the port it came in: allow that.
                write_sysctl(f"/sys/class/net/{veth}/brport/hairpin_mode", "1")
            except BaseException:
                ipr.link("del", index=_index(ipr, veth))
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
        idx = _index(ipr, peer)
        ipr.link("set", index=idx, ifname=ifname, address=mac)
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        if gateway:
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=idx)


def unplug_in_netns(netns: str, ifname: str) -> None:
    """Remove `ifname` from a namespace that is still alive (network disconnect)."""
    with _netlink(f"remove {ifname} from the container", netns) as ipr:
        idx = _index(ipr, ifname)
        if idx is not None:
            ipr.link("del", index=idx)
