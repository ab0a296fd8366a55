"""The OCI runtime's command line, as the engine drives it (like Podman drives runc).

Runtime names: "" / "runc" -> ketch-runc (or $KETCH_OCI_RUNTIME, which lets
a host runc stand in), "vm" -> ketch-runv, an absolute path -> that binary.
Every call passes `--root <paths.runtime_state_root()>`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from ketch import paths
from ketch.errors import FailedPrecondition, InvalidArgument, KetchError


def binary(name: str = "") -> str:
    """Absolute path of the runtime binary chosen by `--runtime`."""
    if name in ("", "runc", "ketch-runc"):
        name = os.environ.get("KETCH_OCI_RUNTIME") or "ketch-runc"
    elif name in ("vm", "ketch-runv"):
        name = "ketch-runv"
    elif not name.startswith("/"):
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")
    if name.startswith("/"):
        if not os.access(name, os.X_OK):
            raise InvalidArgument(f"unknown or invalid runtime name: {name}")
        return name
    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = beside if os.access(beside, os.X_OK) else shutil.which(name)
    if not found:
        raise FailedPrecondition(f"OCI runtime {name!r} not found in $PATH")
    return found


def base_args(runtime: str) -> list[str]:
    return [binary(runtime), "--root", str(paths.runtime_state_root())]


def run(runtime: str, *args: str, check: bool = True, timeout: float = 60,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    """One runtime call; a failure becomes a KetchError carrying the runtime's message."""
    argv = [*base_args(runtime), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise KetchError(f"OCI runtime {args[0]} timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        raise KetchError(f"OCI runtime {args[0]} failed: {clean_message(proc.stderr)}")
    return proc


def state(runtime: str, cid: str) -> dict | None:
    proc = run(runtime, "state", cid, check=False, timeout=20)
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def clean_message(raw: bytes | str) -> str:
    """The human part of a runtime error: runc's logfmt `msg="..."` or JSON `msg`."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    msgs = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                msgs.append(json.loads(line).get("msg", line))
                continue
            except ValueError:
                pass
        if 'msg="' in line:
            body = line.split('msg="', 1)[1].rsplit('"', 1)[0]
            msgs.append(body.replace('\\"', '"').replace("\\\\", "\\"))
        elif "msg=" in line:
            msgs.append(line.split("msg=", 1)[1])
        elif line:
            msgs.append(line)
    return "; ".join(msgs) or "unknown error"


def exec_exit_code(message: str) -> int | None:
    """Docker's mapping of a failed start: 127 command not found, 126 cannot execute."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low \
            or "not found" in low:
        return 127
    if "permission denied" in low or "exec format error" in low or "is a directory" in low:
        return 126
    return None
