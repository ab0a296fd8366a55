"""The event stream (`ketch events`): one JSON line per event in <root>/events.jsonl.

Docker's message shape (Type, Action, Actor{ID, Attributes}, time, timeNano);
appends are single O_APPEND writes below PIPE_BUF, so concurrent writers
(CLI, monitors' exit commands) never interleave inside a line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from ketch import paths


def _path() -> str:
    return os.fspath(paths.root() / "events.jsonl")


def emit(kind: str, action: str, actor_id: str, **attributes: str) -> None:
    now = time.time_ns()
    line = json.dumps({"Type": kind, "Action": action, "status": action, "id": actor_id,
                       "Actor": {"ID": actor_id, "Attributes": attributes},
                       "scope": "local", "time": now // 10**9, "timeNano": now},
                      separators=(",", ":")) + "\n"
    try:
        fd = os.open(_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line.encode()[:4000])
    finally:
        os.close(fd)


def read(since: float = 0, until: float = 0, follow: bool = False) -> Iterator[dict]:
    try:
        f = open(_path())  # noqa: SIM115 - held open while following
    except FileNotFoundError:
        if not follow:
            return
        open(_path(), "a").close()
        f = open(_path())  # noqa: SIM115
    with f:
        while True:
            line = f.readline()
            if not line:
                if not follow or (until and time.time() > until):
                    return
                time.sleep(0.1)
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            t = ev["timeNano"] / 1e9
            if since and t < since:
                continue
            if until and t > until:
                return
            yield ev
