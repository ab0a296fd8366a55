"""Where ketch keeps things.

Durable state lives under the root (default /var/lib/ketch): blobs,
snapshots, the SQLite database, volumes. Volatile state lives under the run
root (default /run/ketch): container runtime state, sockets, pid files. Both
can be moved with KETCH_ROOT and KETCH_RUNROOT; every test gets its own pair.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = "/var/lib/ketch"
DEFAULT_RUNROOT = "/run/ketch"
#: Name of the parent cgroup under which everything ketch creates lives.
CGROUP_PARENT = "ketch"


def root() -> Path:
    return Path(os.environ.get("KETCH_ROOT") or DEFAULT_ROOT)


def runroot() -> Path:
    return Path(os.environ.get("KETCH_RUNROOT") or DEFAULT_RUNROOT)


def runtime_state_root() -> Path:
    """Where the engine's containers keep their OCI runtime state."""
    return runroot() / "runtime"


def cgroup_parent() -> str:
    """The cgroup (relative to each hierarchy's root) that holds ketch's containers.

    Always ``ketch`` or below it; tests set KETCH_CGROUP_PARENT=ketch/t-<id> so
    each test's cgroups can be checked for leaks on their own.
    """
    value = os.environ.get("KETCH_CGROUP_PARENT") or CGROUP_PARENT
    return value.strip("/")
