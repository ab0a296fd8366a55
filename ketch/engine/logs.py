"""Reading a container's log: conmon's k8s-file lines, rendered as `docker logs` does.

conmon writes `<RFC3339Nano> <stdout|stderr> <F|P> <text>`; P marks a
partial line (no newline yet). `follow` keeps reading while the container
runs, so `ketch logs -f` from another shell sees output as it comes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime

from ketch.engine import containers
from ketch.engine.containers import Container


def _parse(line: str) -> tuple[str, str, bytes] | None:
    parts = line.split(" ", 3)
    if len(parts) < 4:
        return None
    ts, stream, tag, text = parts
    data = text.encode() + (b"" if tag == "P" else b"\n")
    return ts, stream, data


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


def read(path: str, c: Container, *, follow: bool, tail: int = -1, since: float = 0,
         until: float = 0) -> Iterator[tuple[str, str, bytes]]:
    """Yield (timestamp, stream, bytes) records."""
    try:
        f = open(path, errors="replace")  # noqa: SIM115 - kept open while following
    except FileNotFoundError:
        return
    with f:
        lines = f.readlines()
        if tail >= 0:
            lines = lines[-tail:] if tail else []
        for line in lines:
            rec = _keep(line, since, until)
            if rec:
                yield rec
        if not follow:
            return
        conn = containers.connect()
        partial = ""
        while True:
            line = f.readline()
            if line:
                partial += line
                if partial.endswith("\n"):
                    rec = _keep(partial, since, until)
                    partial = ""
                    if rec:
                        yield rec
                continue
            cur = containers.get(conn, c.id)
            if cur is None or cur.status not in ("running", "paused", "restarting"):
                rest = f.read()
                for extra in rest.splitlines(keepends=True):
                    rec = _keep(extra, since, until)
                    if rec:
                        yield rec
                return
            time.sleep(0.1)


def _keep(line: str, since: float, until: float):
    rec = _parse(line.rstrip("\n"))
    if rec is None:
        return None
    if since or until:
        t = _epoch(rec[0])
        if (since and t < since) or (until and t > until):
            return None
    return rec


def log_path(cid: str) -> str:
    from ketch.engine.lifecycle import bundle_dir
    return os.fspath(bundle_dir(cid) / "ctr.log")
