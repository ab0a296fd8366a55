"""The integration tier's leak check for cgroups made outside ketch's parent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration import conftest as integration


def test_stray_cgroups_outside_the_ketch_parent_are_found(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    for d in ("memory/ketch/t-1/c1", "memory/process_api/abc/ketch/bench-docker",
              "pids/ketch/t-1", "unified/ketch", "cpu/user.slice"):
        (tmp_path / d).mkdir(parents=True)
    monkeypatch.setattr(integration, "CGROUP_ROOT", tmp_path)
    assert integration._stray_cgroups() == {tmp_path / "memory/process_api/abc/ketch"}
