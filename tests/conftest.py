"""Shared test helpers: tiers, and where the project's commands live."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VENV_BIN = Path(sys.executable).parent


def command(name: str) -> str:
    """Path of one of the project's entry points (ketch, ketch-runc)."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (run `make setup`)")
    return found


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, cgroups, mounts)")


def need_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"needs {name}, which is not installed")
    return found


def until(pred, timeout: float = 60.0, step: float = 0.1):
    """Poll `pred` until it returns something true (returned), or fail the test."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not reached within {timeout:.0f} s")
