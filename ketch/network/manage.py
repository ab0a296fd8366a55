"""Networks as objects: create, list, inspect, remove, connect, disconnect, prune, reconcile.

The three predefined networks (`bridge`, `host`, `none`) are rows like any
other, created on first use. The default bridge's subnet comes from
KETCH_BRIDGE_SUBNET or the pool; its device exists only while in use.
A user network's bridge exists from `create` to `rm`.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import sqlite3

from ketch.errors import Conflict, InvalidArgument, NotFound
from ketch.network import files, host, ipam, link, sandbox, store

PREDEFINED = ("bridge", "host", "none")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def ensure_defaults(conn: sqlite3.Connection) -> None:
    have = {r[0] for r in conn.execute("SELECT name FROM networks WHERE name IN "
                                       "('bridge','host','none')")}
    if len(have) == 3:
        return
    with store.host_lock():
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name in have:
                continue
            row = {"id": secrets.token_hex(32), "name": name, "driver": driver,
                   "bridge": None, "subnet": None, "gateway": None}
            if name == "bridge":
                subnet = _default_subnet(conn)
                row.update(bridge=host.default_bridge_name(), subnet=str(subnet),
                           gateway=str(ipam.default_gateway(subnet)))
            conn.execute("INSERT OR IGNORE INTO networks (id, name, driver, bridge, subnet,"
                         " gateway, created) VALUES (:id, :name, :driver, :bridge, :subnet,"
                         " :gateway, :created)", dict(row, created=_now()))


def _default_subnet(conn) -> ipam.IPv4Network:
    resolvers = files.host_resolv()["nameservers"]
    taken = host.taken_subnets(conn, skip_bridge=host.default_bridge_name())
    wanted = os.environ.get("KETCH_BRIDGE_SUBNET")
    if wanted:
        net = ipam.parse_subnet(wanted)
        ipam.check_free(net, taken, resolvers)
        return net
    return ipam.pick_subnet(taken, resolvers)


def lookup(conn: sqlite3.Connection, ref: str) -> dict:
    ensure_defaults(conn)
    net = store.find_network(conn, ref)
    if net is None:
        raise NotFound(f"network {ref} not found")
    return net


def create(conn: sqlite3.Connection, name: str, *, driver: str = "bridge",
           subnet: str | None = None, gateway: str | None = None,
           ip_range: str | None = None, internal: bool = False,
           labels: dict | None = None, options: dict | None = None) -> dict:
    ensure_defaults(conn)
    if driver != "bridge":
        raise InvalidArgument(f"network driver {driver!r} is not supported (only bridge)")
    if not name or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
        raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")
    if (gateway or ip_range) and not subnet:
        raise InvalidArgument("--gateway and --ip-range need --subnet")
    net_id = secrets.token_hex(32)
    with store.host_lock():
        if conn.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
            raise Conflict(f"network with name {name} already exists")
        resolvers = files.host_resolv()["nameservers"]
        taken = host.taken_subnets(conn)
        if subnet:
            sub = ipam.parse_subnet(subnet)
            ipam.check_free(sub, taken, resolvers)
        else:
            sub = ipam.pick_subnet(taken, resolvers)
        gw = ipam.parse_address(gateway, "gateway") if gateway else ipam.default_gateway(sub)
        ipam.check_gateway(sub, gw)
        rng = ipam.parse_ip_range(ip_range, sub) if ip_range else None
        bridge = _bridge_option(options or {}) or host.bridge_name(net_id)
        row = {"id": net_id, "name": name, "driver": driver, "bridge": bridge,
               "subnet": str(sub), "gateway": str(gw), "ip_range": str(rng) if rng else None,
               "internal": int(internal), "labels": json.dumps(labels or {}),
               "options": json.dumps(options or {}), "created": _now()}
        conn.execute("INSERT INTO networks VALUES (:id, :name, :driver, :bridge, :subnet,"
                     " :gateway, :ip_range, :internal, :labels, :options, :created)", row)
        try:
            host.bring_up(store.find_network(conn, net_id))
            host.sync_rules(conn)
        except BaseException:
            conn.execute("DELETE FROM networks WHERE id = ?", (net_id,))
            link.delete(row["bridge"])
            host.sync_rules(conn)
            raise
    return inspect(conn, net_id)


def _bridge_option(options: dict) -> str | None:
    """-o com.docker.network.bridge.name=NAME: a bridge name of the user's choosing."""
    name = options.get("com.docker.network.bridge.name")
    if not name:
        return None
    if len(name) > 15 or not all(c.isalnum() or c in "-_." for c in name):
        raise InvalidArgument(f"invalid bridge name {name!r}: at most 15 of [a-zA-Z0-9_.-]")
    if link.exists(name):
        raise Conflict(f"bridge name {name!r} is already in use on the host")
    return name


def listing(conn: sqlite3.Connection) -> list[dict]:
    ensure_defaults(conn)
    return [inspect(conn, n["id"]) for n in store.network_rows(conn)]


def inspect(conn: sqlite3.Connection, ref: str) -> dict:
    """Docker's network inspect document."""
    net = lookup(conn, ref)
    containers = {}
    sbs = {sb["container_id"]: sb for sb in store.sandboxes(conn)}
    for ep in store.endpoints(conn, network_id=net["id"]):
        sb = sbs.get(ep["container_id"], {})
        plen = ipam.IPv4Network(net["subnet"]).prefixlen
        containers[ep["container_id"]] = {
            "Name": sb.get("name", ""), "EndpointID": ep["id"], "MacAddress": ep["mac"],
            "IPv4Address": f"{ep['ip']}/{plen}", "IPv6Address": ""}
    config = []
    if net["subnet"]:
        c = {"Subnet": net["subnet"], "Gateway": net["gateway"]}
        if net["ip_range"]:
            c["IPRange"] = net["ip_range"]
        config.append(c)
    options = dict(net["options"])
    if net["bridge"]:
        options.setdefault("com.docker.network.bridge.name", net["bridge"])
    return {"Name": net["name"], "Id": net["id"], "Created": net["created"],
            "Scope": "local", "Driver": net["driver"], "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": net["internal"], "Attachable": False, "Ingress": False,
            "Containers": containers, "Options": options, "Labels": net["labels"]}


def remove(conn: sqlite3.Connection, ref: str) -> str:
    net = lookup(conn, ref)
    if net["name"] in PREDEFINED:
        raise Conflict(f"{net['name']} is a pre-defined network and cannot be removed")
    with store.host_lock():
        eps = store.endpoints(conn, network_id=net["id"])
        if eps:
            raise Conflict(f"error while removing network: network {net['name']} id "
                           f"{net['id']} has active endpoints")
        conn.execute("DELETE FROM networks WHERE id = ?", (net["id"],))
        link.delete(net["bridge"])
        host.names_file(net["id"]).unlink(missing_ok=True)
        host.sync_rules(conn)
    return net["name"]


def prune(conn: sqlite3.Connection, filters: list[str] | None = None) -> list[str]:
    """Remove every unused user network matching the filters; return their names.

    Filters as Docker's: label=k, label=k=v, label!=k[=v], until=<24h | timestamp>.
    """
    keep = prune_filter(filters or [])
    gone = []
    for net in store.network_rows(conn):
        if net["name"] in PREDEFINED or store.endpoints(conn, network_id=net["id"]):
            continue
        if not keep(net):
            continue
        try:
            gone.append(remove(conn, net["id"]))
        except (Conflict, NotFound):
            continue
    return gone


def prune_filter(filters: list[str]):
    tests = []
    for f in filters:
        key, sep, val = f.partition("=")
        if key.endswith("!") and key[:-1] == "label":
            k, has, v = val.partition("=")
            tests.append(lambda n, k=k, has=has, v=v:
                         not (k in n["labels"] and (not has or n["labels"][k] == v)))
        elif key == "label" and sep:
            k, has, v = val.partition("=")
            tests.append(lambda n, k=k, has=has, v=v:
                         k in n["labels"] and (not has or n["labels"][k] == v))
        elif key == "until" and sep:
            limit = _until(val)
            tests.append(lambda n, limit=limit:
                         datetime.datetime.fromisoformat(n["created"]).timestamp() < limit)
        else:
            raise InvalidArgument(f"invalid filter {f!r} (label=, label!=, until=)")
    return lambda n: all(t(n) for t in tests)


def _until(value: str) -> float:
    """A Go duration ago ("24h", "1h30m", "90s") or a Unix/RFC 3339 time."""
    import re
    import time

    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.fullmatch(r"((\d+(\.\d+)?)(h|m|s))+", value)
    if parts:
        secs = sum(float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|m|s)", value))
        return time.time() - secs
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid filter until={value!r}: not a duration or time") \
            from None


def connect(conn: sqlite3.Connection, ref: str, container: str, opts: dict | None = None) -> None:
    """Add a network to an attached, running container (eth<N>)."""
    opts = opts or {}
    net = lookup(conn, ref)
    sb = store.find_sandbox(conn, container)
    if sb is None or not host.alive(sb):
        raise Conflict(f"container {container} is not running")
    if sb["mode"] != "bridge":
        raise Conflict(f"container cannot be connected to network endpoints: {sb['mode']} "
                       f"and {net['name']}")
    if net["driver"] != "bridge":
        raise InvalidArgument(f"container cannot be disconnected from host network or "
                              f"connected to host network: {net['name']}")
    cid = sb["container_id"]
    with store.host_lock():
        index = 1 + max([e["seq"] for e in store.endpoints(conn, container_id=cid)] or [-1])
        ep = sandbox.plug(conn, cid, net, sb["netns"], index, opts)
        try:
            _refresh_dns(conn, sb)
        except BaseException:
            link.delete(ep["veth"])
            conn.execute("DELETE FROM endpoints WHERE id = ?", (ep["id"],))
            raise


def disconnect(conn: sqlite3.Connection, ref: str, container: str) -> None:
    net = lookup(conn, ref)
    sb = store.find_sandbox(conn, container)
    cid = sb["container_id"] if sb else container
    with store.host_lock():
        eps = [e for e in store.endpoints(conn, container_id=cid) if e["network_id"] == net["id"]]
        if not eps:
            raise Conflict(f"container {container} is not connected to network {net['name']}")
        link.delete(eps[0]["veth"])
        conn.execute("DELETE FROM endpoints WHERE id = ?", (eps[0]["id"],))
        _refresh_dns(conn, sb)
        host.write_names(conn, net["id"])
        sandbox._drop_idle_default(conn)
        host.sync_rules(conn)


def _refresh_dns(conn, sb: dict) -> None:
    """Rewrite names and the DNS config of a container; start its server if now needed."""
    cid = sb["container_id"]
    user = [e["network_id"] for e in store.endpoints(conn, container_id=cid)
            if store.find_network(conn, e["network_id"])["name"] != "bridge"]
    for nid in user:
        host.write_names(conn, nid)
    if not user:
        host.stop_dns(sb["dns_pid"], cid)
        conn.execute("UPDATE sandboxes SET dns_pid = NULL WHERE container_id = ?", (cid,))
        return
    host.write_dns_config(cid, user, files.upstreams(sb["opts"].get("dns")))
    if not host.is_dns_process(sb["dns_pid"]):
        pid = host.start_dns(cid, sb["netns"], sb["pid"])
        conn.execute("UPDATE sandboxes SET dns_pid = ? WHERE container_id = ?", (pid, cid))
