"""Shared by the benchmark scripts: remove a (now empty) cgroup parent a run used."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def remove_cgroup_parent(parent: str) -> None:
    """rmdir `parent` (relative to each hierarchy's root) and what is below it, deepest first."""
    base = Path("/sys/fs/cgroup")
    for hier in [base, *base.iterdir()]:
        top = hier / parent.strip("/")
        if top.is_dir():
            for dirpath, _d, _f in sorted(os.walk(top), key=lambda t: -len(t[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
