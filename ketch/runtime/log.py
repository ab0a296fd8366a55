"""What `ketch-runc` tells people: errors and warnings, one line each.

A line goes to stderr (`ketch-runc: msg`, `ketch-runc: warning: msg`) and,
when the global `--log FILE` was given, to that file as well, in runc's
shapes: `time="..." level=warning msg="..."` or, with `--log-format json`,
`{"level": "warning", "msg": "...", "time": "..."}` (what Podman and
containerd parse). Nothing here is imported that the start path does not use:
time and json load only when a log file is written.
"""

from __future__ import annotations

import sys

_dest: dict = {"path": None, "format": "text"}


def configure(path: str | None, fmt: str | None) -> None:
    """Set the --log file and --log-format for this process."""
    _dest["path"] = path or None
    _dest["format"] = fmt or "text"


def warn(msg: str) -> None:
    sys.stderr.write(f"ketch-runc: warning: {msg}\n")
    to_file("warning", msg)


def error(msg: str) -> None:
    sys.stderr.write(f"ketch-runc: {msg}\n")
    to_file("error", msg)


def to_file(level: str, msg: str) -> None:
    path = _dest["path"]
    if not path:
        return
    import time
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if _dest["format"] == "json":
        import json
        line = json.dumps({"level": level, "msg": msg, "time": stamp})
    else:
        line = f'time="{stamp}" level={level} msg="{_quote(msg)}"'
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass  # the log is a copy: stderr already has the line


def _quote(msg: str) -> str:
    return msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
