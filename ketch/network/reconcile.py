"""Make the host agree with the database again, after a crash or `kill -9`.

A container whose init is gone (or whose pid now belongs to another
process: the start time differs) is detached: its DNS server stopped, its
leases and port rules dropped. Then what the database does not know is
removed: host-side veths and bridges carrying this root's name prefix,
DNS name files; and what it does know is restored: user network bridges
(after a reboot) and the nftables table, re-rendered whole.
"""

from __future__ import annotations

import os
import sqlite3

from ketch.network import host, link, sandbox, store


def reconcile(conn: sqlite3.Connection, full: bool = False) -> dict:
    """Return what was cleaned: {"containers": [...], "veths": [...], "bridges": [...]}.

    Cheap when there is nothing to do (reads /proc and /sys only), so every
    command may call it; `full` also restores bridges and reloads the table
    (after a reboot, or from `ketch system prune`).
    """
    report: dict = {"containers": [], "veths": [], "bridges": []}
    if not full and not _work_to_do(conn):
        return report
    with store.host_lock():
        for sb in store.sandboxes(conn):
            if not host.alive(sb):
                sandbox._teardown(conn, sb)
                report["containers"].append(sb["container_id"])
        known = {sb["container_id"] for sb in store.sandboxes(conn)}
        for ep in store.endpoints(conn):
            if ep["container_id"] not in known:
                conn.execute("DELETE FROM endpoints WHERE id = ?", (ep["id"],))
        for name in _orphan_veths(conn):
            if link.delete(name):
                report["veths"].append(name)
        nets = store.network_rows(conn)
        for name in _orphan_bridges(conn):
            if link.delete(name):
                report["bridges"].append(name)
        for net in host.active_networks(conn):
            host.bring_up(net, conn)
        sandbox._drop_idle_default(conn)
        _clean_files({n["id"] for n in nets}, known)
        host.sync_rules(conn)
    return report


def _links(prefix: str, bridges_only: bool = False) -> list[str]:
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return []
    return [n for n in names if n.startswith(prefix)
            and (not bridges_only or os.path.isdir(f"/sys/class/net/{n}/bridge"))]


def _orphan_veths(conn) -> list[str]:
    veths = {ep["veth"] for ep in store.endpoints(conn)}
    return [n for n in _links(host.veth_prefix()) if n not in veths]


def _orphan_bridges(conn) -> list[str]:
    bridges = {n["bridge"] for n in store.network_rows(conn) if n["bridge"]}
    return [n for n in _links(host.bridge_prefix(), True) if n not in bridges]


def _work_to_do(conn) -> bool:
    if any(not host.alive(sb) for sb in store.sandboxes(conn)):
        return True
    if _orphan_veths(conn) or _orphan_bridges(conn):
        return True
    # A user network whose bridge vanished (reboot): restore it and the table.
    return any(not os.path.isdir(f"/sys/class/net/{n['bridge']}")
               for n in host.active_networks(conn))


def _clean_files(network_ids: set[str], containers: set[str]) -> None:
    names = host.state_dir() / "names"
    for path in names.glob("*.json") if names.is_dir() else []:
        if path.stem not in network_ids:
            path.unlink(missing_ok=True)
    dns = host.state_dir() / "dns"
    for path in dns.glob("*") if dns.is_dir() else []:
        if path.name.split(".")[0] not in containers:
            path.unlink(missing_ok=True)
