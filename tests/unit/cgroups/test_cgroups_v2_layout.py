"""cgroup v2 translation and conversions, layout detection, path resolution, validation."""

from __future__ import annotations

import os

import pytest

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.runtime.cgroups import CgroupManager, fs, layout, manager_for, v2, validate

MIB = 1 << 20

HYBRID_MOUNTINFO = """\
24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
38 35 0:33 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
39 35 0:34 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
40 35 0:35 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
"""
V2_MOUNTINFO = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"


def test_layout_hybrid_with_comounted_controllers():
    lay = layout.parse_mountinfo(HYBRID_MOUNTINFO)
    assert lay.mode == "hybrid"
    assert lay.mounts["cpu"] == lay.mounts["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert lay.mounts["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert lay.mounts["unified"] == "/sys/fs/cgroup/unified"


def test_layout_v2_and_v1():
    assert layout.parse_mountinfo(V2_MOUNTINFO).mode == "v2"
    v1 = HYBRID_MOUNTINFO.replace("cgroup2 cgroup2", "tmpfs tmpfs")
    assert layout.parse_mountinfo(v1).mode == "v1"


def test_path_resolution(monkeypatch):
    lay = layout.parse_mountinfo(HYBRID_MOUNTINFO)
    monkeypatch.setenv("KETCH_CGROUP_PARENT", "ketch/t-1")
    assert manager_for(None, "abc", layout=lay).paths["memory"] == "/sys/fs/cgroup/memory/ketch/t-1/abc"
    assert manager_for("", "abc", layout=lay).path == "ketch/t-1/abc"
    # Absolute and relative: both below each hierarchy root.
    assert manager_for("/cgrouptest", "x", layout=lay).paths["memory"] == "/sys/fs/cgroup/memory/cgrouptest"
    rel = manager_for("testdir/cgrouptest/container", "x", layout=lay)
    assert rel.paths["unified"] == "/sys/fs/cgroup/unified/testdir/cgrouptest/container"
    # Co-mounted controllers share one directory; it is created once.
    assert len(rel._dirs()) == 5
    for bad in ("../escape", "/a/../../b", "/"):
        with pytest.raises(InvalidArgument, match="cgroupsPath"):
            manager_for(bad, "x", layout=lay)


def test_conversions_match_runc():
    assert v2.shares_to_weight(2) == 1
    assert v2.shares_to_weight(1024) == 39
    assert v2.shares_to_weight(262144) == 10000
    assert v2.blkio_to_io_weight(10) == 1
    assert v2.blkio_to_io_weight(500) == 4950
    assert v2.blkio_to_io_weight(1000) == 10000
    assert v2.swap_max(64 * MIB, 96 * MIB) == 32 * MIB
    assert v2.swap_max(64 * MIB, -1) == "max"
    with pytest.raises(InvalidArgument, match="below"):
        v2.swap_max(64 * MIB, 32 * MIB)


def test_v2_apply_and_enable_controllers(v2tree):
    with open(os.path.join(v2tree.layout.mounts["unified"], "cgroup.subtree_control"), "w") as f:
        f.write("cpu memory pids")
    m = manager_for("ketch/c1", "c1", layout=v2tree.layout)
    m.create()
    root = v2tree.layout.mounts["unified"]
    # The root's delegation is the host's: read, never written; below it, passed on.
    assert fs.read(root, "cgroup.subtree_control") == "cpu memory pids"
    assert fs.read(os.path.join(root, "ketch"), "cgroup.subtree_control").endswith("+pids")
    m.set({"memory": {"limit": 64 * MIB, "swap": 96 * MIB, "reservation": 16 * MIB},
           "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
           "pids": {"limit": 20}, "blockIO": {"weight": 500},
           "unified": {"memory.high": "50000000"}})
    d = m.paths["unified"]
    assert fs.read(d, "memory.max") == str(64 * MIB)
    assert fs.read(d, "memory.swap.max") == str(32 * MIB)
    assert fs.read(d, "memory.low") == str(16 * MIB)
    assert fs.read(d, "cpu.weight") == "39"
    assert fs.read(d, "cpu.max") == "50000 100000"
    assert fs.read(d, "cpuset.cpus") == "0"
    assert fs.read(d, "pids.max") == "20"
    assert fs.read(d, "io.weight") == "4950"
    assert fs.read(d, "memory.high") == "50000000"


def test_v2_unlimited_quota_and_unmappable(v2tree):
    m = manager_for("c1", "c1", layout=v2tree.layout)
    m.create()
    m.set({"cpu": {"quota": -1, "period": 100000}})
    assert fs.read(m.paths["unified"], "cpu.max") == "max 100000"
    m.set({"memory": {"limit": 64 * MIB, "swap": 96 * MIB}})
    m.set({"memory": {"limit": -1}})  # unlimited memory, swap unset: unlimited swap too (runc)
    assert fs.read(m.paths["unified"], "memory.max") == "max"
    assert fs.read(m.paths["unified"], "memory.swap.max") == "max"
    with pytest.raises(InvalidArgument, match="swappiness"):
        m.set({"memory": {"swappiness": 10}})
    with pytest.raises(FailedPrecondition, match="net_cls"):
        m.set({"network": {"classID": 1}})


def test_v2_stats_and_freeze(v2tree):
    m = manager_for("c1", "c1", layout=v2tree.layout)
    m.create()
    s = m.stats()
    assert s["cpu"]["usage"] == {"total": 10000, "kernel": 4000, "user": 6000}
    assert s["memory"]["usage"]["usage"] == 12288 and s["memory"]["usage"]["failcnt"] == 4
    assert s["memory"]["cache"] == 300
    assert {"major": 8, "minor": 0, "op": "Write", "value": 512} in s["blkio"]["ioServiceBytesRecursive"]
    assert {"major": 8, "minor": 0, "op": "Write", "value": 2} in s["blkio"]["ioServicedRecursive"]
    # The fake kernel does not update cgroup.events itself: report 'frozen' as the kernel would.
    events = os.path.join(m.paths["unified"], "cgroup.events")
    with open(events, "w") as f:
        f.write("populated 1\nfrozen 1\n")
    m.freeze()
    assert m.frozen()


def test_validate_rejects_bad_values(monkeypatch):
    monkeypatch.setattr(validate, "detect", lambda: layout.parse_mountinfo(HYBRID_MOUNTINFO))
    ok = {"memory": {"limit": 64 * MIB, "swap": 96 * MIB}, "cpu": {"cpus": "0-1,3", "shares": 512},
          "pids": {"limit": 10}, "devices": [{"allow": False, "access": "rwm"}]}
    CgroupManager.validate(ok)
    cases = [
        ({"memory": {"limit": "64m"}}, "memory.limit: must be an integer"),
        ({"memory": {"swappiness": 101}}, "swappiness: 101 is out of range"),
        ({"memory": {"limit": 64 * MIB, "swap": 32 * MIB}}, "below memory.limit"),
        ({"cpu": {"cpus": "0-a"}}, "cpu.cpus"),
        ({"cpu": {"shares": True}}, "cpu.shares: must be an integer"),
        ({"blockIO": {"weight": 5000}}, "blockIO.weight"),
        ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, "pageSize"),
        ({"devices": [{"allow": True, "type": "z"}]}, "devices"),
    ]
    for res, msg in cases:
        with pytest.raises(InvalidArgument, match=msg):
            CgroupManager.validate(res)
    # The hybrid host of HYBRID_MOUNTINFO has no hugetlb or net_cls: cannot be mapped -> error.
    with pytest.raises(FailedPrecondition, match="hugetlb"):
        CgroupManager.validate({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]})
    with pytest.raises(FailedPrecondition, match="net_cls"):
        CgroupManager.validate({"network": {"classID": 1}})


@pytest.mark.parametrize("value", [None, "", "ketch/t-1", "/ketch/x/", "other"])
def test_restated_paths_match_ketch_paths(monkeypatch, value):
    """cgroups and the seccomp cache avoid importing ketch.paths; they must agree with it."""
    from ketch import paths
    from ketch.runtime import cgroups, seccomp_cache

    for var in ("KETCH_CGROUP_PARENT", "KETCH_RUNROOT"):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    assert cgroups.cgroup_parent() == paths.cgroup_parent()
    if value:  # an empty KETCH_RUNROOT means the default in both
        assert seccomp_cache.directory() == os.path.join(str(paths.runroot()), "seccomp")
    else:
        assert seccomp_cache.directory() == os.path.join(paths.DEFAULT_RUNROOT, "seccomp")
