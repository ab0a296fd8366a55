"""Named volumes: the `local` driver, a directory <root>/volumes/<name>/_data.

A volume is in use while any container (running or not) mounts it, so it
cannot be removed until that container is. Anonymous volumes (`-v /data`)
get a random 64-hex name and go away with `rm -v` or `volume prune`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

from ketch import paths
from ketch.engine import db
from ketch.errors import Conflict, InvalidArgument, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL DEFAULT 'local',
    created REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    anonymous INTEGER NOT NULL DEFAULT 0
);
"""
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def connect() -> sqlite3.Connection:
    conn = db.connect()
    db.ensure_schema(conn, "volumes", SCHEMA)
    return conn


def data_dir(name: str) -> Path:
    return paths.root() / "volumes" / name / "_data"


def create(conn: sqlite3.Connection, name: str = "", labels: dict | None = None,
           driver: str = "local", anonymous: bool = False) -> dict:
    db.ensure_schema(conn, "volumes", SCHEMA)
    if driver != "local":
        raise InvalidArgument(f"volume driver {driver!r} is not supported (only local)")
    if not name:
        name, anonymous = os.urandom(32).hex(), True
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f'"{name}" includes invalid characters for a local volume '
                              'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
    conn.execute("INSERT OR IGNORE INTO volumes (name, created, labels, anonymous) "
                 "VALUES (?,?,?,?)", (name, time.time(), json.dumps(labels or {}),
                                      int(anonymous)))
    data_dir(name).mkdir(parents=True, exist_ok=True)
    return get(conn, name)


def get(conn: sqlite3.Connection, name: str) -> dict:
    db.ensure_schema(conn, "volumes", SCHEMA)
    row = conn.execute("SELECT * FROM volumes WHERE name=?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"get {name}: no such volume")
    return inspect(row)


def inspect(row: sqlite3.Row) -> dict:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["created"]))
    return {"CreatedAt": created, "Driver": row["driver"],
            "Labels": json.loads(row["labels"]) or None,
            "Mountpoint": str(data_dir(row["name"])), "Name": row["name"],
            "Options": None, "Scope": "local"}


def all_volumes(conn: sqlite3.Connection) -> list[dict]:
    db.ensure_schema(conn, "volumes", SCHEMA)
    return [inspect(r) for r in conn.execute("SELECT * FROM volumes ORDER BY name")]


def users(conn: sqlite3.Connection, name: str) -> list[str]:
    """Ids of containers that mount the volume."""
    from ketch.engine import containers
    out = []
    for c in containers.all_containers(conn):
        if any(m.type == "volume" and m.source == name for m in c.options.mounts):
            out.append(c.id)
    return out


def remove(conn: sqlite3.Connection, name: str, force: bool = False) -> None:
    get(conn, name)
    used = users(conn, name)
    if used and not force:
        raise Conflict(f"remove {name}: volume is in use - [{', '.join(used)}]")
    shutil.rmtree(paths.root() / "volumes" / name, ignore_errors=True)
    conn.execute("DELETE FROM volumes WHERE name=?", (name,))


def prune(conn: sqlite3.Connection, all_: bool = False) -> list[str]:
    """Unused anonymous volumes (all unused ones with `all_`), as Docker 23+ does."""
    gone = []
    for v in all_volumes(conn):
        row = conn.execute("SELECT anonymous FROM volumes WHERE name=?", (v["Name"],)).fetchone()
        if (all_ or row["anonymous"]) and not users(conn, v["Name"]):
            remove(conn, v["Name"])
            gone.append(v["Name"])
    return gone


def disk_usage(name: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(data_dir(name)):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total
