"""Attach and detach one container: the order of every step, and its undo.

attach: validate everything first (networks exist, ports parse, --ip fits),
then under the host lock: lease + veth per network, port bindings, the
nftables table; then the DNS server and the files. A failure at any point
(a host port in use, say) undoes what was done, from the database's record,
so it leaves no lease, veth, rule or process behind. detach undoes attach from the
database's record alone, so it also works after a crash.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3

from ketch.errors import Conflict, InvalidArgument, NotFound
from ketch.network import files, host, ipam, link, ports, store

_NETNS_PID = re.compile(r"^/proc/(\d+)/ns/net$")


def _split_modes(network) -> list[str]:
    items = network if isinstance(network, list) else [network or "bridge"]
    items = [("bridge" if i in ("", "default") else i) for i in items]
    if len(items) > 1 and any(i in ("none", "host") or i.startswith("container:")
                              for i in items):
        raise InvalidArgument("container cannot be connected to multiple networks with "
                              f"one of the networks in private mode: {items}")
    return items


def attach(conn: sqlite3.Connection, container_id: str, network, netns_path: str | None,
           opts: dict) -> dict:
    from ketch.network import manage

    manage.ensure_defaults(conn)
    items = _split_modes(network)
    old = store.sandbox(conn, container_id)
    if old is not None:
        if host.alive(old) and old["mode"] != "host":
            raise Conflict(f"container {container_id[:12]} is already attached to a network")
        with store.host_lock():
            _teardown(conn, old)  # left over from a crash or a restart without detach
    pid = opts.get("pid")
    m = _NETNS_PID.match(netns_path or "")
    if not pid and m:
        pid = int(m.group(1))
    hostname = opts.get("hostname") or container_id[:12]
    base = {"container_id": container_id, "name": (opts.get("name") or "").lstrip("/"),
            "netns": netns_path, "pid": pid, "pid_start": host.pid_start(pid) if pid else None,
            "hostname": hostname, "opts": opts}
    first = items[0]
    if first == "host":
        return _simple(conn, base, "host", _host_file("/etc/hosts"),
                       files.resolv_conf(False, opts.get("dns"), opts.get("dns_search"),
                                         opts.get("dns_options")))
    if first.startswith("container:"):
        target = store.find_sandbox(conn, first.split(":", 1)[1])
        if target is None:
            raise NotFound(f"container {first.split(':', 1)[1]!r} not found "
                           "(or it has no network)")
        return _simple(conn, dict(base, netns=target["netns"]), f"container:"
                       f"{target['container_id']}", target["hosts"], target["resolv"])
    if not netns_path:
        raise InvalidArgument(f"network {first!r} needs the container's netns path")
    if first == "none":
        link.loopback_up(netns_path)
        return _simple(conn, base, "none", _hosts(base, [], opts),
                       files.resolv_conf(False, opts.get("dns"), opts.get("dns_search"),
                                         opts.get("dns_options")))
    nets = [manage.lookup(conn, name) for name in items]
    for n in nets:
        if n["driver"] != "bridge":
            raise InvalidArgument(f"network {n['name']!r} cannot be combined with others")
    return _attach_bridge(conn, base, nets, opts)


def _simple(conn, base: dict, mode: str, hosts_text: str, resolv_text: str) -> dict:
    opts = base["opts"]
    files.write_in_place(opts.get("hosts_path"), hosts_text)
    files.write_in_place(opts.get("resolv_conf_path"), resolv_text)
    files.write_in_place(opts.get("hostname_path"), base["hostname"] + "\n")
    _insert_sandbox(conn, dict(base, mode=mode, hosts=hosts_text, resolv=resolv_text))
    return _describe(conn, base["container_id"])


def _host_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _insert_sandbox(conn, sb: dict) -> None:
    conn.execute(
        "INSERT INTO sandboxes (container_id, name, mode, netns, pid, pid_start, hostname,"
        " ports, opts, dns_pid, hosts, resolv) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (sb["container_id"], sb["name"], sb["mode"], sb["netns"], sb["pid"], sb["pid_start"],
         sb["hostname"], json.dumps(sb.get("ports", [])), json.dumps(sb["opts"]),
         sb.get("dns_pid"), sb.get("hosts", ""), sb.get("resolv", "")))


def _validate(opts: dict, nets: list[dict]) -> list[dict]:
    """Everything that can be refused before the host is touched; returns port bindings."""
    user = nets[0]["name"] != "bridge"
    if opts.get("ip") and not user:
        raise InvalidArgument("user specified IP address is supported on user defined "
                              "networks only")
    if opts.get("aliases") and not user:
        raise InvalidArgument("network-scoped aliases are supported for user-defined "
                              "networks only")
    if opts.get("mac"):
        ipam.parse_mac(opts["mac"])
    files.check_dns(opts.get("dns") or [])
    for item in opts.get("extra_hosts") or []:
        files.parse_extra_host(item)
    # Docker's per-network default host address for -p without one; else the
    # KETCH_PUBLISH_IP setting; else 0.0.0.0.
    default_ip = nets[0]["options"].get("com.docker.network.bridge.host_binding_ipv4")
    bindings = []
    for spec in opts.get("ports") or []:
        bindings += ports.parse(str(spec), default_ip)
    if opts.get("publish_all"):
        bindings += ports.exposed_bindings(opts.get("exposed") or [], default_ip)
    return bindings


def _attach_bridge(conn, base: dict, nets: list[dict], opts: dict) -> dict:
    bindings = _validate(opts, nets)
    cid = base["container_id"]
    user_nets = [n["id"] for n in nets if n["name"] != "bridge"]
    with store.host_lock(), contextlib.ExitStack() as undo:
        undo.callback(_rollback, conn, cid)
        _insert_sandbox(conn, dict(base, mode="bridge"))
        for i, net in enumerate(nets):
            plug(conn, cid, net, base["netns"], i, opts if i == 0 else {})
        primary = store.endpoints(conn, container_id=cid)[0]
        taken = [b for other in store.sandboxes(conn) for b in other["ports"]]
        resolved = ports.resolve(bindings, taken)
        for b in resolved:
            b.update(container_ip=primary["ip"], bridge=nets[0]["bridge"])
        conn.execute("UPDATE sandboxes SET ports = ? WHERE container_id = ?",
                     (json.dumps(resolved), cid))
        host.sync_rules(conn)
        for nid in user_nets:
            host.write_names(conn, nid)
        undo.pop_all()
    # The DNS server starts outside the host lock (it takes a Python start-up);
    # if it fails, detach undoes everything above.
    dns_pid = None
    try:
        if user_nets:
            host.write_dns_config(cid, user_nets, files.upstreams(opts.get("dns")))
            dns_pid = host.start_dns(cid, base["netns"], base["pid"])
        addrs = [e["ip"] for e in store.endpoints(conn, container_id=cid)]
        hosts_text = _hosts(base, addrs[:1], opts, nets[0]["gateway"])
        resolv_text = files.resolv_conf(bool(user_nets), opts.get("dns"),
                                        opts.get("dns_search"), opts.get("dns_options"))
        conn.execute("UPDATE sandboxes SET dns_pid = ?, hosts = ?, resolv = ? "
                     "WHERE container_id = ?", (dns_pid, hosts_text, resolv_text, cid))
        files.write_in_place(opts.get("hosts_path"), hosts_text)
        files.write_in_place(opts.get("resolv_conf_path"), resolv_text)
        files.write_in_place(opts.get("hostname_path"), base["hostname"] + "\n")
    except BaseException:
        if dns_pid:
            host.stop_dns(dns_pid, cid)
        detach(conn, cid)
        raise
    return _describe(conn, cid)


def _hosts(base: dict, addrs: list[str], opts: dict, gateway: str = "") -> str:
    extra = [files.parse_extra_host(h) for h in opts.get("extra_hosts") or []]
    # --add-host name:host-gateway means the host, as seen from the container.
    extra = [(n, gateway if a == "host-gateway" and gateway else a) for n, a in extra]
    return files.hosts(base["hostname"], addrs, extra, opts.get("domainname") or "")


def _rollback(conn, cid: str) -> None:
    sb = store.sandbox(conn, cid)
    if sb is not None:
        _teardown(conn, sb)


def plug(conn, cid: str, net: dict, netns: str, index: int, opts: dict) -> dict:
    """Lease an address on `net` and plug a veth for it into `netns` as eth<index>."""
    for ep in store.endpoints(conn, container_id=cid):
        if ep["network_id"] == net["id"]:
            sb = store.sandbox(conn, cid) or {}
            raise Conflict(f"endpoint with name {sb.get('name') or cid[:12]} already exists "
                           f"in network {net['name']}")
    host.bring_up(net, conn)
    subnet = ipam.IPv4Network(net["subnet"])
    with store.transaction(conn):
        used = {e["ip"] for e in store.endpoints(conn, network_id=net["id"])}
        rng = ipam.IPv4Network(net["ip_range"]) if net["ip_range"] else None
        addr = ipam.allocate(subnet, ipam.IPv4Address(net["gateway"]), used, rng,
                             opts.get("ip"))
        mac = ipam.parse_mac(opts["mac"]) if opts.get("mac") else ipam.mac_for(addr)
        ep = {"id": _endpoint_id(cid, net["id"]), "network_id": net["id"],
              "container_id": cid, "ifname": f"eth{index}",
              "veth": host.veth_name(cid, net["id"]), "ip": str(addr), "mac": mac,
              "aliases": json.dumps(opts.get("aliases") or []), "seq": index}
        conn.execute("INSERT INTO endpoints (id, network_id, container_id, ifname, veth, ip,"
                     " mac, aliases, seq) VALUES (:id, :network_id, :container_id, :ifname,"
                     " :veth, :ip, :mac, :aliases, :seq)", ep)
    gateway = None if (net["internal"] or index) else net["gateway"]
    try:
        link.plug(net["bridge"], ep["veth"], netns, ep["ifname"], str(addr), subnet.prefixlen,
                  mac, gateway, int(net["options"].get("com.docker.network.driver.mtu") or 1500))
    except BaseException:
        conn.execute("DELETE FROM endpoints WHERE id = ?", (ep["id"],))  # release the lease
        raise
    return ep


def _endpoint_id(cid: str, nid: str) -> str:
    import hashlib

    return hashlib.sha256(f"{cid}/{nid}".encode()).hexdigest()


def detach(conn: sqlite3.Connection, container_id: str) -> None:
    with store.host_lock():
        sb = store.sandbox(conn, container_id)
        if sb is None:
            return
        _teardown(conn, sb)


def _teardown(conn, sb: dict) -> None:
    """Remove everything recorded for one sandbox (callers hold the host lock)."""
    cid = sb["container_id"]
    host.stop_dns(sb["dns_pid"], cid)
    eps = store.endpoints(conn, container_id=cid)
    for ep in eps:
        link.delete(ep["veth"])
    conn.execute("DELETE FROM endpoints WHERE container_id = ?", (cid,))
    conn.execute("DELETE FROM sandboxes WHERE container_id = ?", (cid,))
    for nid in {ep["network_id"] for ep in eps}:
        host.write_names(conn, nid)
    _drop_idle_default(conn)
    host.sync_rules(conn)


def _drop_idle_default(conn) -> None:
    """The default bridge exists only while a container uses it."""
    row = store.find_network(conn, "bridge")
    if row and row["bridge"] and not store.endpoints(conn, network_id=row["id"]):
        link.delete(row["bridge"])


def settings(conn: sqlite3.Connection, container_id: str) -> dict | None:
    """Docker's NetworkSettings of an attached container (None if not attached)."""
    full = _describe(conn, container_id)
    if full is None:
        return None
    for key in ("NetworkMode", "Hostname", "hosts", "resolv_conf"):
        full.pop(key)
    return full


def _describe(conn: sqlite3.Connection, container_id: str) -> dict | None:
    """NetworkSettings plus what only attach's caller needs (mode, hostname, file texts)."""
    sb = store.sandbox(conn, container_id)
    if sb is None:
        return None
    out = {"Bridge": "", "SandboxID": container_id, "SandboxKey": sb["netns"] or "",
           "Ports": ports.docker_ports(sb["ports"], sb["opts"].get("exposed") or []),
           "EndpointID": "", "IPAddress": "", "IPPrefixLen": 0, "Gateway": "",
           "MacAddress": "", "Networks": {}, "NetworkMode": sb["mode"],
           "Hostname": sb["hostname"], "hosts": sb["hosts"], "resolv_conf": sb["resolv"]}
    for ep in store.endpoints(conn, container_id=container_id):
        net = store.find_network(conn, ep["network_id"])
        plen = ipam.IPv4Network(net["subnet"]).prefixlen
        gw = "" if net["internal"] else net["gateway"]
        names = [n for n in [sb["name"], *ep["aliases"], container_id[:12]] if n]
        out["Networks"][net["name"]] = {
            "NetworkID": net["id"], "EndpointID": ep["id"], "IPAddress": ep["ip"],
            "IPPrefixLen": plen, "Gateway": gw, "MacAddress": ep["mac"],
            "Aliases": ep["aliases"] or None,
            "DNSNames": names if net["name"] != "bridge" else None}
        if ep["seq"] == 0:
            out.update(EndpointID=ep["id"], IPAddress=ep["ip"], IPPrefixLen=plen, Gateway=gw,
                       MacAddress=ep["mac"])
            if sb["mode"] == "bridge":
                out["NetworkMode"] = "default" if net["name"] == "bridge" else net["name"]
    if sb["mode"] in ("host", "none"):
        out["Networks"][sb["mode"]] = {"NetworkID": "", "EndpointID": "", "IPAddress": "",
                                       "IPPrefixLen": 0, "Gateway": "", "MacAddress": ""}
    return out


def netns_of(conn: sqlite3.Connection, container: str) -> str:
    sb = store.find_sandbox(conn, container)
    if sb is None or not sb["netns"]:
        raise NotFound(f"container {container!r} has no network namespace")
    return sb["netns"]
