"""engine/db.py: opening the database from several processes at once."""

from __future__ import annotations

import os

from ketch.engine import db


def _race(root, n: int = 3) -> list[int]:
    """n forked processes released together, each opening a fresh database; exit codes."""
    r, w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:   # child: wait for the release, open, report by exit code
            code = 1
            try:
                os.close(w)
                os.read(r, 1)
                db.connect(root).execute("SELECT 1")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(r)
    os.write(w, b"x" * n)
    os.close(w)
    return [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]


def test_processes_opening_a_fresh_database_together_all_succeed(tmp_path):
    for i in range(15):
        assert _race(tmp_path / f"root{i}") == [0, 0, 0]
