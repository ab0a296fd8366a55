"""cgroup v1 / hybrid: linux.resources -> files, on a fake tree (no root needed)."""

from __future__ import annotations

import os

import pytest

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.runtime.cgroups import CgroupManager, fs, manager_for

MIB = 1 << 20


def _mgr(tree, path="ketch/t/c1"):
    m = manager_for(path, "c1", layout=tree.layout)
    m.create()
    return m


def test_create_makes_every_hierarchy_and_records_dirs(hybridtree):
    m = _mgr(hybridtree)
    assert set(m.paths) == {"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer",
                            "blkio", "unified"}
    for d in m.paths.values():
        assert os.path.isdir(d)
    # Intermediates too, parent before child, so destroy() can go deepest first.
    mem = [d for d in m.created if "/memory/" in d]
    assert [d.rsplit("/memory/", 1)[1] for d in mem] == ["ketch", "ketch/t", "ketch/t/c1"]


def test_existing_intermediate_is_not_recorded(v1tree):
    os.mkdir(os.path.join(v1tree.layout.mounts["memory"], "ketch"))
    m = _mgr(v1tree)
    assert os.path.join(v1tree.layout.mounts["memory"], "ketch") not in m.created
    assert os.path.join(v1tree.layout.mounts["memory"], "ketch", "t") in m.created


def test_destroy_keeps_ketch_top_parent_and_removes_the_rest(hybridtree, monkeypatch):
    # A fake tree holds plain files: rmdir of a cgroup dir needs them gone first.
    def rmdir(path, _real=os.rmdir):
        for name in os.listdir(path):
            if os.path.isfile(os.path.join(path, name)):
                os.unlink(os.path.join(path, name))
        _real(path)
    monkeypatch.setattr(os, "rmdir", rmdir)
    monkeypatch.delenv("KETCH_CGROUP_PARENT", raising=False)
    m = _mgr(hybridtree)
    m.destroy()
    for mount in set(hybridtree.layout.mounts.values()):
        assert os.path.isdir(os.path.join(mount, "ketch"))     # made once, kept (as /docker)
        assert not os.path.exists(os.path.join(mount, "ketch", "t"))
    # A cgroup outside ketch's tree removes every dir it made.
    other = manager_for("elsewhere/c2", "c2", layout=hybridtree.layout)
    other.create()
    other.destroy()
    for mount in set(hybridtree.layout.mounts.values()):
        assert not os.path.exists(os.path.join(mount, "elsewhere"))


def test_cpuset_copied_from_parent_at_every_level(v1tree):
    _mgr(v1tree)
    root = v1tree.layout.mounts["cpuset"]
    for sub in ("ketch", "ketch/t", "ketch/t/c1"):
        assert fs.read(os.path.join(root, sub), "cpuset.cpus") == "0-1"
        assert fs.read(os.path.join(root, sub), "cpuset.mems") == "0"


def test_memory_limits_and_knobs(v1tree):
    m = _mgr(v1tree)
    m.set({"memory": {"limit": 48 * MIB, "reservation": 32 * MIB, "swap": 96 * MIB,
                      "kernelTCP": 8 * MIB, "swappiness": 10, "disableOOMKiller": True}})
    d = m.paths["memory"]
    assert fs.read(d, "memory.limit_in_bytes") == str(48 * MIB)
    assert fs.read(d, "memory.soft_limit_in_bytes") == str(32 * MIB)
    assert fs.read(d, "memory.memsw.limit_in_bytes") == str(96 * MIB)  # spec swap = memory+swap
    assert fs.read(d, "memory.kmem.tcp.limit_in_bytes") == str(8 * MIB)
    assert fs.read(d, "memory.swappiness") == "10"
    assert fs.read(d, "memory.oom_control") == "1"


def test_memsw_written_after_limit_when_shrinking(v1tree, writes):
    m = _mgr(v1tree)
    m.set({"memory": {"limit": 48 * MIB, "swap": 64 * MIB}})
    order = [w[0] for w in writes if w[0].startswith("memory.")]
    assert order == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_memsw_written_first_when_growing(v1tree, writes):
    m = _mgr(v1tree)
    with open(os.path.join(m.paths["memory"], "memory.memsw.limit_in_bytes"), "w") as f:
        f.write(str(64 * MIB))
    m.set({"memory": {"limit": 128 * MIB, "swap": 256 * MIB}})
    order = [w[0] for w in writes if w[0].startswith("memory.")]
    assert order == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_swap_without_swap_accounting_errors(v1tree):
    v1tree.missing |= {"memory.memsw.limit_in_bytes"}
    m = _mgr(v1tree)
    with pytest.raises(FailedPrecondition, match="swap accounting"):
        m.set({"memory": {"limit": 48 * MIB, "swap": 64 * MIB}})
    m.set({"memory": {"limit": 48 * MIB, "swap": -1}})  # unlimited swap needs no accounting
    assert fs.read(m.paths["memory"], "memory.limit_in_bytes") == str(48 * MIB)


def test_kernel_memory_skipped_when_the_kernel_dropped_it(v1tree, writes):
    m = _mgr(v1tree)  # the fake, like kernels >= 6.x without kmem, has no memory.kmem.limit_in_bytes
    m.set({"memory": {"kernel": 48 * MIB}})
    assert not any(w[0] == "memory.kmem.limit_in_bytes" for w in writes)


def test_cpu_and_cpuset(v1tree):
    m = _mgr(v1tree)
    m.set({"cpu": {"shares": 2048, "quota": 50000, "period": 200000, "cpus": "1", "mems": "0",
                   "realtimePeriod": 1000000, "realtimeRuntime": 950000}})
    assert fs.read(m.paths["cpu"], "cpu.shares") == "2048"
    assert fs.read(m.paths["cpu"], "cpu.cfs_quota_us") == "50000"
    assert fs.read(m.paths["cpu"], "cpu.cfs_period_us") == "200000"
    assert fs.read(m.paths["cpu"], "cpu.rt_runtime_us") == "950000"
    assert fs.read(m.paths["cpuset"], "cpuset.cpus") == "1"


def test_pids_negative_means_max(v1tree):
    m = _mgr(v1tree)
    m.set({"pids": {"limit": 42}})
    assert fs.read(m.paths["pids"], "pids.max") == "42"
    m.set({"pids": {"limit": -1}})
    assert fs.read(m.paths["pids"], "pids.max") == "max"


def test_blkio_weight_without_weight_file_names_it(v1tree):
    m = _mgr(v1tree)  # like this host: no CFQ/BFQ weight files
    with pytest.raises(FailedPrecondition, match="blkio.weight"):
        m.set({"blockIO": {"weight": 500}})


def test_blkio_throttle_lines(v1tree):
    m = _mgr(v1tree)
    m.set({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                       "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]}})
    assert fs.read(m.paths["blkio"], "blkio.throttle.read_bps_device") == "8:0 1048576"
    assert fs.read(m.paths["blkio"], "blkio.throttle.write_iops_device") == "8:0 100"


def test_missing_controllers_are_errors(v1tree):
    m = _mgr(v1tree)
    with pytest.raises(FailedPrecondition, match="hugetlb cgroup controller"):
        m.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]})
    with pytest.raises(FailedPrecondition, match="net_cls"):
        m.set({"network": {"classID": 1048577}})


def test_unified_needs_v2(v1tree):
    with pytest.raises(InvalidArgument, match="needs cgroup v2"):
        _mgr(v1tree).set({"unified": {"memory.high": "1000000"}})


def test_stats_shape(hybridtree):
    m = _mgr(hybridtree)
    s = m.stats()
    assert s["cpu"]["usage"]["total"] == 5000
    assert s["cpu"]["usage"]["percpu"] == [3000, 2000]
    assert s["cpu"]["usage"]["user"] == 3 * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert s["cpu"]["throttling"] == {"periods": 7, "throttledPeriods": 2, "throttledTime": 900}
    assert s["memory"]["usage"] == {"limit": 9223372036854771712, "usage": 4096, "max": 8192, "failcnt": 0}
    assert s["memory"]["cache"] == 100 and s["memory"]["raw"]["rss"] == 200
    assert s["pids"] == {"current": 3, "limit": 0}
    assert s["blkio"]["ioServiceBytesRecursive"][0] == {"major": 8, "minor": 0, "op": "Read", "value": 4096}


def test_add_writes_every_distinct_dir(hybridtree):
    m = _mgr(hybridtree)
    m.add(4242)
    for d in m.paths.values():
        assert fs.read(d, "cgroup.procs") == "4242"


def test_add_failure_names_pid_and_cgroup(hybridtree):
    m = _mgr(hybridtree)
    os.unlink(os.path.join(m.paths["pids"], "cgroup.procs"))
    with pytest.raises(FailedPrecondition, match=r"add process 4242 to cgroup .*/pids/ketch/t/c1: No such file"):
        m.add(4242)


def test_freeze_v1(hybridtree):
    m = _mgr(hybridtree)
    m.freeze()
    assert m.frozen() and fs.read(m.paths["freezer"], "freezer.state") == "FROZEN"
    m.thaw()
    assert not m.frozen()


def test_state_round_trip(hybridtree):
    m = _mgr(hybridtree)
    again = CgroupManager.from_state(m.to_state())
    assert again.paths == m.paths and again.created == m.created and again.mode == "hybrid"


def test_blkio_stats_prefer_the_schedulers_counters(hybridtree):
    m = _mgr(hybridtree)
    d = m.paths["blkio"]
    with open(os.path.join(d, "blkio.bfq.io_service_bytes_recursive"), "w") as f:
        f.write("8:16 Read 123\n8:16 Write 45\nTotal 168\n")
    with open(os.path.join(d, "blkio.bfq.io_serviced_recursive"), "w") as f:
        f.write("8:16 Read 3\n")
    s = m.stats()["blkio"]
    assert s["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 16, "op": "Read", "value": 123},
        {"major": 8, "minor": 16, "op": "Write", "value": 45}]
    assert s["ioServicedRecursive"] == [{"major": 8, "minor": 16, "op": "Read", "value": 3}]


def test_unlimited_memory_lifts_memsw_too(v1tree, writes):
    m = _mgr(v1tree)
    m.set({"memory": {"limit": 48 * MIB, "swap": 64 * MIB}})
    writes.clear()
    m.set({"memory": {"limit": -1}})
    assert [(w[0], w[1]) for w in writes] == [("memory.memsw.limit_in_bytes", "-1"),
                                              ("memory.limit_in_bytes", "-1")]
