"""Make the host agree with the database again, after a crash or `kill -9`.

A container whose init is gone (or whose pid now belongs to another
process: the start time differs) is detached: its DNS server stopped, its
leases and port rules dropped. Then what the database does not know is
removed: host-side veths and bridges carrying this root's name prefix,
DNS name files; and what it does know is restored: user network bridges
(after a reboot) and the nftables table, re-rendered whole.
"""

from __future__ import annotations

import sqlite3

from ketch.network import host, link, sandbox, store


def reconcile(conn: sqlite3.Connection) -> dict:
    """Return what was cleaned: {"containers": [...], "veths": [...], "bridges": [...]}."""
    report: dict = {"containers": [], "veths": [], "bridges": []}
    with store.host_lock():
        for sb in store.sandboxes(conn):
            if not host.alive(sb):
                sandbox._teardown(conn, sb)
                report["containers"].append(sb["container_id"])
        known = {sb["container_id"] for sb in store.sandboxes(conn)}
        for ep in store.endpoints(conn):
            if ep["container_id"] not in known:
                conn.execute("DELETE FROM endpoints WHERE id = ?", (ep["id"],))
        veths = {ep["veth"] for ep in store.endpoints(conn)}
        for name in link.list_links(host.veth_prefix()):
            if name not in veths and link.delete(name):
                report["veths"].append(name)
        nets = store.network_rows(conn)
        bridges = {n["bridge"] for n in nets if n["bridge"]}
        for name in link.list_links(host.bridge_prefix(), kind="bridge"):
            if name not in bridges and link.delete(name):
                report["bridges"].append(name)
        for net in host.active_networks(conn):
            host.bring_up(net)
        sandbox._drop_idle_default(conn)
        _clean_files({n["id"] for n in nets}, known)
        host.sync_rules(conn)
    return report


def _clean_files(network_ids: set[str], containers: set[str]) -> None:
    names = host.state_dir() / "names"
    for path in names.glob("*.json") if names.is_dir() else []:
        if path.stem not in network_ids:
            path.unlink(missing_ok=True)
    dns = host.state_dir() / "dns"
    for path in dns.glob("*") if dns.is_dir() else []:
        if path.name.split(".")[0] not in containers:
            path.unlink(missing_ok=True)
