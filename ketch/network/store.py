"""The network tables of the engine's database, and the few queries on them.

    networks   one row per network (the default `bridge` included); its
               bridge device name, subnet, gateway and flags
    endpoints  one row per (network, container): the lease (UNIQUE per
               network), MAC, host-side veth, aliases
    sandboxes  one row per attached container: mode, netns, pid (with its
               start time, so a reused pid is not mistaken for the container),
               published ports, DNS server pid, file contents

The engine declares SCHEMA through db.ensure_schema; this module never
opens a connection. The host-wide lock serialises every change that touches
shared host state (bridges, routes, the nftables table).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    bridge TEXT,
    subnet TEXT,
    gateway TEXT,
    ip_range TEXT,
    internal INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks(id),
    container_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    veth TEXT NOT NULL,
    ip TEXT NOT NULL,
    mac TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (network_id, ip),
    UNIQUE (network_id, container_id)
);
CREATE TABLE IF NOT EXISTS sandboxes (
    container_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL,
    netns TEXT,
    pid INTEGER,
    pid_start TEXT,
    hostname TEXT NOT NULL DEFAULT '',
    ports TEXT NOT NULL DEFAULT '[]',
    opts TEXT NOT NULL DEFAULT '{}',
    dns_pid INTEGER,
    hosts TEXT NOT NULL DEFAULT '',
    resolv TEXT NOT NULL DEFAULT ''
);
"""

LOCK_PATH = "/run/lock/ketch-network.lock"


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialise changes to host network state across every ketch process and root."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def network_rows(conn: sqlite3.Connection) -> list[dict]:
    return [_net(r) for r in conn.execute("SELECT * FROM networks ORDER BY created, name")]


def find_network(conn: sqlite3.Connection, ref: str) -> dict | None:
    """A network by exact name, full id, or unique id prefix."""
    row = conn.execute("SELECT * FROM networks WHERE name = ? OR id = ?", (ref, ref)).fetchone()
    if row is None and ref and all(c in "0123456789abcdef" for c in ref):
        rows = conn.execute("SELECT * FROM networks WHERE id LIKE ?", (ref + "%",)).fetchall()
        row = rows[0] if len(rows) == 1 else None
    return _net(row) if row else None


def _net(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["labels"] = json.loads(d["labels"])
    d["options"] = json.loads(d["options"])
    d["internal"] = bool(d["internal"])
    return d


def endpoints(conn: sqlite3.Connection, *, network_id: str | None = None,
              container_id: str | None = None) -> list[dict]:
    sql, args = "SELECT * FROM endpoints WHERE 1=1", []
    if network_id:
        sql += " AND network_id = ?"
        args.append(network_id)
    if container_id:
        sql += " AND container_id = ?"
        args.append(container_id)
    out = []
    for r in conn.execute(sql + " ORDER BY seq", args):
        d = dict(r)
        d["aliases"] = json.loads(d["aliases"])
        out.append(d)
    return out


def sandbox(conn: sqlite3.Connection, container_id: str) -> dict | None:
    row = conn.execute("SELECT * FROM sandboxes WHERE container_id = ?",
                       (container_id,)).fetchone()
    return _sb(row) if row else None


def sandboxes(conn: sqlite3.Connection) -> list[dict]:
    return [_sb(r) for r in conn.execute("SELECT * FROM sandboxes")]


def find_sandbox(conn: sqlite3.Connection, ref: str) -> dict | None:
    """A sandbox by container id, unique id prefix, or container name."""
    rows = conn.execute(
        "SELECT * FROM sandboxes WHERE container_id = ? OR name = ? OR name = ?",
        (ref, ref, ref.lstrip("/"))).fetchall()
    if not rows:
        rows = conn.execute("SELECT * FROM sandboxes WHERE container_id LIKE ?",
                            (ref + "%",)).fetchall()
    return _sb(rows[0]) if len(rows) == 1 else None


def _sb(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["ports"] = json.loads(d["ports"])
    d["opts"] = json.loads(d["opts"])
    return d


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (the connection is autocommit).

    Inside a caller's transaction it only runs the body: the caller commits.
    """
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
