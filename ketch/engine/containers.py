"""The containers table: identity, names, status and exit facts of every container.

Rows are written only here. A name is UNIQUE in the table, so two `run
--name x` racing each other cannot both win: the loser's INSERT fails and
it is told which container holds the name. `lookup` accepts a full id, a
unique id prefix or a name, like Docker. The status of a row that claims
to be running is checked against its monitor process (pid + start time)
so that after a reboot or a killed monitor `ps` tells the truth.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

from ketch.engine import db
from ketch.engine.options import CreateOptions
from ketch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from ketch.oci.record import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    image_id TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL,
    image_config TEXT NOT NULL,
    rootfs TEXT NOT NULL DEFAULT '[]',
    pid INTEGER NOT NULL DEFAULT 0,
    monitor_pid INTEGER NOT NULL DEFAULT 0,
    monitor_start TEXT NOT NULL DEFAULT '',
    exit_code INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL DEFAULT 0,
    finished_at REAL NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    restart_delay REAL NOT NULL DEFAULT 0,
    manually_stopped INTEGER NOT NULL DEFAULT 0,
    health TEXT NOT NULL DEFAULT ''
);
"""

STATUSES = ("created", "running", "paused", "restarting", "exited", "dead", "removing")
_ADJ = ("admiring", "brave", "clever", "eager", "festive", "gallant", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant", "zealous")
_NOUN = ("turing", "hopper", "lovelace", "curie", "noether", "ritchie", "thompson",
         "torvalds", "knuth", "dijkstra", "hamilton", "shannon", "babbage", "liskov")


class Container(Record):
    id: str
    name: str
    image: str
    image_id: str
    created: float
    status: str
    options: CreateOptions
    image_config: dict
    rootfs: list
    pid: int
    monitor_pid: int
    monitor_start: str
    exit_code: int
    oom_killed: bool
    error: str
    started_at: float
    finished_at: float
    restart_count: int
    restart_delay: float
    manually_stopped: bool
    health: dict

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Container:
        d = dict(row)
        d["options"] = CreateOptions.from_json(json.loads(d["options"]))
        d["image_config"] = json.loads(d["image_config"])
        d["rootfs"] = json.loads(d["rootfs"])
        d["oom_killed"] = bool(d["oom_killed"])
        d["manually_stopped"] = bool(d["manually_stopped"])
        d["health"] = json.loads(d["health"]) if d["health"] else {}
        return cls(**d)

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")


def connect() -> sqlite3.Connection:
    conn = db.connect()
    db.ensure_schema(conn, "containers", SCHEMA)
    return conn


def new_id() -> str:
    return os.urandom(32).hex()


def random_name(conn: sqlite3.Connection) -> str:
    for _ in range(50):
        name = f"{_pick(_ADJ)}_{_pick(_NOUN)}"
        if conn.execute("SELECT 1 FROM containers WHERE name=?", (name,)).fetchone() is None:
            return name
    return f"{_pick(_ADJ)}_{_pick(_NOUN)}{_pick(range(1, 10000))}"


def _pick(seq):
    # os.urandom rather than `random`, whose import (~1.5 ms) every unnamed run would pay.
    return seq[int.from_bytes(os.urandom(4), "little") % len(seq)]


def check_name(name: str) -> None:
    import re
    if not re.fullmatch(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")


def insert(conn: sqlite3.Connection, cid: str, name: str, image: str, image_id: str,
           opts: CreateOptions, image_config: dict) -> None:
    """Claim the name and id; the UNIQUE name constraint settles races."""
    try:
        conn.execute(
            "INSERT INTO containers (id, name, image, image_id, created, status, options,"
            " image_config) VALUES (?,?,?,?,?,?,?,?)",
            (cid, name, image, image_id, time.time(), "created",
             json.dumps(opts.to_json()), json.dumps(image_config)))
    except sqlite3.IntegrityError:
        row = conn.execute("SELECT id FROM containers WHERE name=?", (name,)).fetchone()
        if row is None:
            raise
        raise AlreadyExists(
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{row["id"]}". You have to remove (or rename) that container to be able to '
            "reuse that name.") from None


def update(conn: sqlite3.Connection, cid: str, **fields) -> None:
    for key in ("health", "rootfs"):
        if key in fields and not isinstance(fields[key], str):
            fields[key] = json.dumps(fields[key])
    if "options" in fields:
        fields["options"] = json.dumps(fields["options"].to_json())
    cols = ", ".join(f"{k}=?" for k in fields)
    conn.execute(f"UPDATE containers SET {cols} WHERE id=?", (*fields.values(), cid))


def delete(conn: sqlite3.Connection, cid: str) -> None:
    conn.execute("DELETE FROM containers WHERE id=?", (cid,))


def get(conn: sqlite3.Connection, cid: str) -> Container | None:
    row = conn.execute("SELECT * FROM containers WHERE id=?", (cid,)).fetchone()
    return reconcile(conn, Container.from_row(row)) if row else None


def lookup(conn: sqlite3.Connection, ref: str) -> Container:
    """By exact id, exact name, or unique id prefix (Docker's order)."""
    ref = ref.lstrip("/")
    row = conn.execute("SELECT * FROM containers WHERE id=? OR name=? ORDER BY id=? DESC",
                       (ref, ref, ref)).fetchone()
    if row is None and ref and all(c in "0123456789abcdef" for c in ref):
        rows = conn.execute("SELECT * FROM containers WHERE id LIKE ?",
                            (ref + "%",)).fetchall()
        if len(rows) > 1:
            raise Conflict(f"multiple IDs found with provided prefix: {ref}")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"No such container: {ref}")
    return reconcile(conn, Container.from_row(row))


def all_containers(conn: sqlite3.Connection) -> list[Container]:
    rows = conn.execute("SELECT * FROM containers ORDER BY created DESC").fetchall()
    return [reconcile(conn, Container.from_row(r)) for r in rows]


def process_start(pid: int) -> str:
    """The start time of a live pid (field 22 of /proc/pid/stat): tells a pid reused apart.

    A zombie counts as gone ("" ): it has exited, whoever fails to reap it.
    """
    from ketch.runtime.state import proc_start_time
    start = proc_start_time(pid)
    return "" if start is None else str(start)


def monitor_alive(c: Container) -> bool:
    return bool(c.monitor_pid) and process_start(c.monitor_pid) == c.monitor_start


def reconcile(conn: sqlite3.Connection, c: Container) -> Container:
    """A 'running' row whose monitor is gone (killed, or the host rebooted) is exited."""
    if c.status in ("running", "paused") and not monitor_alive(c):
        from ketch.engine import monitor
        code = monitor.read_exit_code(c.id)
        c.status, c.exit_code = "exited", (255 if code is None else code)
        c.finished_at = c.finished_at or time.time()
        # pid stays: the runtime may still hold state that `rm` must delete.
        update(conn, c.id, status=c.status, exit_code=c.exit_code, finished_at=c.finished_at)
    return c
