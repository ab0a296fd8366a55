"""What a bench run plans to measure, per mode and runtime kind, and option checks."""

from __future__ import annotations

import pytest

from ketch.bench.suite import ADAPTERS, GROUPS, Options, plan
from ketch.bench.workloads import CPU_BYTES, IO_MB
from ketch.errors import InvalidArgument


def test_quick_plan_keeps_vms_short():
    c, v = plan("container", Options()), plan("vm", Options())
    assert (c.starts, c.http, c.app, c.rounds) == (3, 1, 1, 3)
    assert (v.starts, v.http, v.app, v.rounds) == (2, 1, 1, 1)
    assert c.cpu_bytes == v.cpu_bytes == CPU_BYTES["quick"]  # same work on both sides
    assert (c.io_mb, v.io_mb) == (IO_MB["quick"], IO_MB["quick"] // 4)


def test_full_plan_and_runs_override():
    c, v = plan("container", Options(mode="full")), plan("vm", Options(mode="full"))
    assert (c.starts, v.starts) == (10, 5)
    assert (c.http, v.http, c.app, v.app) == (5, 3, 3, 3)
    assert plan("vm", Options(mode="full", runs=7)).starts == 7
    assert plan("container", Options(runs=1)).starts == 1


def test_runtime_names_and_aliases():
    assert Options().selected() == list(ADAPTERS)
    assert Options(runtimes=["vm", "ketch", "micro-vm"]).selected() == ["microvm", "container"]
    with pytest.raises(InvalidArgument, match="unknown runtime 'lxc'"):
        Options(runtimes=["lxc"]).selected()


def test_groups():
    assert Options().groups() == list(GROUPS)
    assert Options(only=["memory"]).groups() == ["memory"]
    with pytest.raises(InvalidArgument, match="unknown measurement 'disk'"):
        Options(only=["disk"]).groups()
