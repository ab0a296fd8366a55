"""The engine's SQLite database: one file per root, WAL, written only through engine/.

Each engine module owns its tables and declares them with `ensure_schema`;
lower layers (image/, network/) never open the database themselves: the
engine hands them a connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ketch import paths

_SCHEMA_DONE: set[tuple[str, str]] = set()


def connect(root: Path | None = None) -> sqlite3.Connection:
    """Open (creating if needed) the database under `root` (default: paths.root())."""
    root = root or paths.root()
    root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(root / "ketch.db", timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def ensure_schema(conn: sqlite3.Connection, owner: str, statements: str) -> None:
    """Run an owner's CREATE ... IF NOT EXISTS statements once per connection's database."""
    key = (str(conn.execute("PRAGMA database_list").fetchone()[2]), owner)
    if key in _SCHEMA_DONE:
        return
    conn.executescript(statements)
    _SCHEMA_DONE.add(key)
