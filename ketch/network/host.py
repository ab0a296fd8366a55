"""Host-side state derived from the database: device names, rules, DNS files and servers.

Names carry a tag derived from KETCH_ROOT (empty for the default root), so
two roots on one host (tests run in parallel) never touch each other's
bridges, veths or nftables table:

    default bridge   ketch0            / ketch<tag>
    user bridge      kb-<12 hex>       / kb<tag>-<7 hex>
    veth (host end)  kv_<12 hex>       / kv<tag>_<7 hex>
    nftables table   ip ketch          / ip ketch_<tag>
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from ketch import paths
from ketch.errors import FailedPrecondition
from ketch.network import files, ipam, link, nft, store
from ketch.runtime.state import proc_start_time

TAG_LEN = 5


def tag() -> str:
    root = paths.root()
    if str(root) == paths.DEFAULT_ROOT:
        return ""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:TAG_LEN]


def _fill(prefix: str, sep: str, seed: str) -> str:
    t = tag()
    head = f"{prefix}{t}{sep}"
    return head + hashlib.sha256(seed.encode()).hexdigest()[:15 - len(head)]


def default_bridge_name() -> str:
    return os.environ.get("KETCH_BRIDGE") or f"ketch{tag() or '0'}"


def bridge_name(network_id: str) -> str:
    return _fill("kb", "-", network_id)


def veth_name(container_id: str, network_id: str) -> str:
    return _fill("kv", "_", container_id + network_id)


def veth_prefix() -> str:
    return f"kv{tag()}_"


def peer_prefix() -> str:
    """The host-side name of a veth's peer before it moves into the container (link.py)."""
    return "kp" + veth_prefix()[2:]


def bridge_prefix() -> str:
    return f"kb{tag()}-"


def table_name() -> str:
    t = tag()
    return f"ketch_{t}" if t else "ketch"


def state_dir() -> Path:
    return paths.runroot() / "network"


def taken_subnets(conn: sqlite3.Connection, skip_bridge: str = "") -> list:
    """Every subnet a new network must not overlap: host routes and our networks."""
    taken, ours = [], {skip_bridge}
    for n in store.network_rows(conn):
        if n["subnet"] and n["bridge"] != skip_bridge:
            taken.append((f"network {n['name']}", ipam.IPv4Network(n["subnet"])))
            ours.add(n["bridge"])
    # Routes on our own bridges are already named above, as networks.
    taken += [(f"route on {dev}", net) for dev, net in ipam.host_routes() if dev not in ours]
    return taken


def bring_up(net: dict, conn: sqlite3.Connection | None = None) -> None:
    """Make the network's bridge exist with its gateway address (idempotent).

    The default bridge exists only while used, so by the time it comes back
    something else (another root's bridge, a VPN) may have taken its subnet:
    then, unless the subnet was configured, it moves to a free one.
    """
    if conn is not None and net["name"] == "bridge" and not link.exists(net["bridge"]) \
            and not os.environ.get("KETCH_BRIDGE_SUBNET"):
        _repick_default(conn, net)
    subnet = ipam.IPv4Network(net["subnet"])
    if not net["internal"]:
        link.enable_forwarding()
    mtu = int(net["options"].get("com.docker.network.driver.mtu") or link.DEFAULT_MTU)
    link.ensure_bridge(net["bridge"], net["gateway"], subnet.prefixlen, mtu)


def _repick_default(conn: sqlite3.Connection, net: dict) -> None:
    from ketch.errors import Conflict

    if store.endpoints(conn, network_id=net["id"]):
        return  # leases were given from this subnet: never move it under them
    taken = taken_subnets(conn, skip_bridge=net["bridge"])
    resolvers = files.host_resolv()["nameservers"]
    try:
        ipam.check_free(ipam.IPv4Network(net["subnet"]), taken, resolvers)
        return
    except Conflict:
        pass
    subnet = ipam.pick_subnet(taken, resolvers)
    net.update(subnet=str(subnet), gateway=str(ipam.default_gateway(subnet)))
    conn.execute("UPDATE networks SET subnet = ?, gateway = ? WHERE id = ?",
                 (net["subnet"], net["gateway"], net["id"]))


def active_networks(conn: sqlite3.Connection) -> list[dict]:
    """Bridge networks whose device should exist: user networks, and the default one in use."""
    out = []
    for n in store.network_rows(conn):
        if n["driver"] != "bridge":
            continue
        if n["name"] == "bridge" and not store.endpoints(conn, network_id=n["id"]):
            continue
        out.append(n)
    return out


def sync_rules(conn: sqlite3.Connection) -> None:
    """Re-render and load the nftables table from the database."""
    nets = [{"bridge": n["bridge"], "subnet": n["subnet"], "internal": n["internal"],
             "masquerade": n["options"].get(
                 "com.docker.network.bridge.enable_ip_masquerade", "true") != "false"}
            for n in active_networks(conn)]
    bindings = [b for sb in store.sandboxes(conn) for b in sb["ports"]]
    nft.apply(table_name(), nets, bindings)


def names_file(network_id: str) -> Path:
    return state_dir() / "names" / f"{network_id}.json"


def dns_config(container_id: str) -> Path:
    return state_dir() / "dns" / f"{container_id}.json"


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def write_names(conn: sqlite3.Connection, network_id: str) -> None:
    """The name table the DNS servers of this network's containers read."""
    table: dict[str, list[str]] = {}
    sbs = {sb["container_id"]: sb for sb in store.sandboxes(conn)}
    net = store.find_network(conn, network_id)
    for ep in store.endpoints(conn, network_id=network_id):
        sb = sbs.get(ep["container_id"])
        names = [ep["container_id"][:12], *ep["aliases"]]
        if sb and sb["name"]:
            names.insert(0, sb["name"])
        # Docker also answers <name>.<network>.
        names += [f"{n}.{net['name']}" for n in names] if net else []
        for name in names:
            table.setdefault(name.lower(), []).append(ep["ip"])
    if table:
        _write_json(names_file(network_id), table)
    else:
        names_file(network_id).unlink(missing_ok=True)


def write_dns_config(container_id: str, network_ids: list[str], upstream: list[str]) -> None:
    _write_json(dns_config(container_id), {
        "names": [str(names_file(n)) for n in network_ids], "upstream": upstream})


def start_dns(container_id: str, netns: str, pid: int | None) -> int:
    """Start the container's embedded DNS server; return its pid once it listens."""
    r, w = os.pipe()
    log = state_dir() / "dns" / f"{container_id}.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ketch.network.dns", "--config",
             str(dns_config(container_id)), "--netns", netns, "--pid", str(pid or 0),
             "--ready-fd", str(w)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            pass_fds=(w,), start_new_session=True, close_fds=True)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode(errors="replace")
    if answer != "ok":
        proc.wait()
        raise FailedPrecondition(answer or "embedded DNS server exited before listening")
    return proc.pid


def is_dns_process(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ketch.network.dns" in f.read()
    except OSError:
        return False


def stop_dns(pid: int | None, container_id: str) -> None:
    if is_dns_process(pid):
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except ChildProcessError:
            _wait_gone(pid)
        except OSError:
            pass
    dns_config(container_id).unlink(missing_ok=True)
    (state_dir() / "dns" / f"{container_id}.log").unlink(missing_ok=True)


def _wait_gone(pid: int) -> None:
    import time

    for _ in range(100):
        if not is_dns_process(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def pid_start(pid: int) -> str | None:
    """The start time of `pid` (field 22 of /proc/<pid>/stat), to detect pid reuse."""
    start = proc_start_time(pid)
    return None if start is None else str(start)


def alive(sb: dict) -> bool:
    """Is the sandbox's container still the process we attached?"""
    if not sb["pid"]:
        return sb["mode"] == "host"
    return pid_start(sb["pid"]) == sb["pid_start"]


def host_resolv() -> dict:
    return files.host_resolv()
