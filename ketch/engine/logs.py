"""Reading a container's log: Docker's json-file lines, rendered as `docker logs` does.

The monitor (monitor.c) writes one JSON object per line,
`{"log":"<text>","stream":"stdout|stderr","time":"<RFC 3339, 9 digits>Z"}`;
a "log" without a trailing newline is part of a line longer than 16 KiB, or
the last output before the container ended. With `--log-opt max-size` the
file rotates to `<log>.1` (newest) ... `<log>.<max-file - 1>`: they are read
oldest first. `follow` keeps reading while the container runs, across
rotations, so `ketch logs -f` from another shell sees output as it comes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime

from ketch.engine import containers
from ketch.engine.containers import Container


def _parse(line: str) -> tuple[str, str, bytes] | None:
    try:
        rec = json.loads(line)
        return rec["time"], rec["stream"], rec["log"].encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        return None   # a line cut short (disk full, a killed monitor): skipped


def _epoch(ts: str) -> float:
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", ts)
    if not m:
        return 0.0
    tz = m.group(3) if m.group(3) and m.group(3) != "Z" else "+00:00"
    return datetime.fromisoformat(m.group(1) + tz).timestamp() + float("0." + (m.group(2) or "0"))


def since_value(text: str) -> float:
    """--since/--until: a Unix time, an RFC 3339 time, or a duration before now (10m)."""
    from ketch.engine.options import parse_duration
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time() - parse_duration(text, "--since") / 1e9


def rotated(path: str) -> list[str]:
    """The rotated files of a log, oldest first (`<log>.N` ... `<log>.1`)."""
    found = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        found.append(f"{path}.{n}")
        n += 1
    return found[::-1]


def read(path: str, c: Container, *, follow: bool, tail: int = -1, since: float = 0,
         until: float = 0) -> Iterator[tuple[str, str, bytes]]:
    """Yield (timestamp, stream, bytes) records."""
    lines: list[str] = []
    for old in rotated(path):
        try:
            with open(old, errors="replace") as f:
                lines += f.readlines()
        except FileNotFoundError:   # rotated away while we looked
            continue
    try:
        f = open(path, errors="replace")  # noqa: SIM115 - kept open while following
    except FileNotFoundError:
        f = None
    if f is not None:
        lines += f.readlines()
    if tail >= 0:
        lines = lines[-tail:] if tail else []
    for line in lines:
        rec = _keep(line, since, until)
        if rec:
            yield rec
    if not follow:
        if f is not None:
            f.close()
        return
    yield from _follow(path, f, c, since, until)


def _follow(path: str, f, c: Container, since: float, until: float):
    conn = containers.connect()
    partial = ""
    try:
        while True:
            line = f.readline() if f is not None else ""
            if line:
                partial += line
                if partial.endswith("\n"):
                    rec = _keep(partial, since, until)
                    partial = ""
                    if rec:
                        yield rec
                continue
            if _replaced(path, f):   # rotated (or first written): go on with the new file
                if f is not None:
                    f.close()
                f = open(path, errors="replace")  # noqa: SIM115
                partial = ""
                continue
            cur = containers.get(conn, c.id)
            if cur is None or cur.status not in ("running", "paused", "restarting"):
                rest = f.read() if f is not None else ""
                for extra in (partial + rest).splitlines(keepends=True):
                    rec = _keep(extra, since, until)
                    if rec:
                        yield rec
                return
            time.sleep(0.1)
    finally:
        if f is not None:
            f.close()


def _replaced(path: str, f) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return f is None or os.fstat(f.fileno()).st_ino != st.st_ino


def _keep(line: str, since: float, until: float):
    rec = _parse(line)
    if rec is None:
        return None
    if since or until:
        t = _epoch(rec[0])
        if (since and t < since) or (until and t > until):
            return None
    return rec


def log_path(cid: str) -> str:
    from ketch.engine.bundle import log_file
    return log_file(cid)
