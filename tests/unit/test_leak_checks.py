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


def test_network_leftovers_are_the_links_named_for_this_root(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KETCH_ROOT", str(tmp_path / "root"))
    prefixes, table = integration._net_names()
    from ketch.network import host
    bridge = host.default_bridge_name()
    assert bridge in prefixes and bridge != "ketch0" and table == f"ketch_{host.tag()}"
    net = tmp_path / "net"
    mine = [bridge, host.veth_name("c" * 64, "n" * 64), host.bridge_name("n" * 64)]
    for name in [*mine, "eth0", "ketch0", "docker0"]:
        (net / name).mkdir(parents=True)
    links, _tables = integration._net_leftovers(prefixes, "no-such-table", str(net))
    assert sorted(links) == sorted(mine)
