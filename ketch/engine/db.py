"""The engine's SQLite database: one file per root, WAL, written only through engine/.

Each engine module owns its tables and declares them with `ensure_schema`;
lower layers (image/, network/) never open the database themselves: the
engine hands them a connection.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ketch import paths

_SCHEMA_DONE: set[tuple[str, str]] = set()


def connect(root: Path | None = None) -> sqlite3.Connection:
    """Open (creating if needed) the database under `root` (default: paths.root())."""
    root = root or paths.root()
    root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(root / "ketch.db", timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    _wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes opening a fresh database at once can get
    "database is locked" here at once, without the busy timeout being waited
    out (the switch needs the database alone): retry briefly."""
    for attempt in range(400):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 399:
                raise
            time.sleep(0.005 if attempt < 20 else 0.05)


def ensure_schema(conn: sqlite3.Connection, owner: str, statements: str) -> None:
    """Run an owner's CREATE ... IF NOT EXISTS statements once per connection's database."""
    key = (str(conn.execute("PRAGMA database_list").fetchone()[2]), owner)
    if key in _SCHEMA_DONE:
        return
    conn.executescript(statements)
    _SCHEMA_DONE.add(key)
