"""Real cgroups under KETCH_CGROUP_PARENT: create, limit, add a child, stats, freeze, destroy.

Probes are harmless: limits are read back from the kernel's files, and the
device checks open /dev/kmsg for reading only (and close it at once).
"""

from __future__ import annotations

import os
import signal

import pytest

from ketch.errors import FailedPrecondition
from ketch.runtime.cgroups import CgroupManager, fs, layout, manager_for

MIB = 1 << 20
LAYOUT = layout.detect()


def _child():
    """A forked child that waits on a pipe; returns (pid, write end)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    return pid, w


def _probe_in(manager: CgroupManager, path: str) -> str:
    """Open `path` read-only from a child inside the cgroup; 'ok' or the errno name."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            manager.add(os.getpid())
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            msg = "ok"
        except OSError as exc:
            msg = os.strerror(exc.errno)
        except Exception as exc:  # noqa: BLE001 - report, never raise in the fork
            msg = f"error {exc}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 200).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return out


@pytest.mark.skipif(LAYOUT.mode == "v2", reason="host has cgroup v2 only (v1/hybrid test)")
def test_lifecycle_v1_hybrid(ketch_env):
    m = manager_for(None, "c1")
    assert m.path == f"{ketch_env['KETCH_CGROUP_PARENT']}/c1"
    m.create()
    pid = None
    try:
        m.set({"memory": {"limit": 64 * MIB, "reservation": 32 * MIB, "swap": 96 * MIB,
                          "kernelTCP": 16 * MIB, "swappiness": 10},
               "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
               "pids": {"limit": 32},
               "devices": [{"allow": False, "access": "rwm"},
                           {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]})
        assert fs.read(m.paths["memory"], "memory.limit_in_bytes") == str(64 * MIB)
        assert fs.read(m.paths["memory"], "memory.soft_limit_in_bytes") == str(32 * MIB)
        if fs.exists(m.paths["memory"], "memory.memsw.limit_in_bytes"):
            assert fs.read(m.paths["memory"], "memory.memsw.limit_in_bytes") == str(96 * MIB)
        assert fs.read(m.paths["memory"], "memory.kmem.tcp.limit_in_bytes") == str(16 * MIB)
        assert fs.read(m.paths["memory"], "memory.swappiness") == "10"
        assert fs.read(m.paths["cpu"], "cpu.shares") == "512"
        assert fs.read(m.paths["cpu"], "cpu.cfs_quota_us") == "50000"
        assert fs.read(m.paths["cpuset"], "cpuset.cpus") == "0"
        assert fs.read(m.paths["pids"], "pids.max") == "32"
        listing = fs.read(m.paths["devices"], "devices.list").splitlines()
        assert listing[0] == "c 10:229 rwm" and "c 1:3 rwm" in listing

        pid, w = _child()
        m.add(pid)
        with open(f"/proc/{pid}/cgroup") as f:
            own = f.read()
        for key in m.paths:
            ctrl = "" if key == "unified" else key
            assert any(line.split(":", 2)[1] == ctrl and line.endswith("/" + m.path)
                       for line in own.splitlines()), key
        assert m.pids() == [pid]
        st = m.stats()
        assert st["pids"] == {"current": 1, "limit": 32}
        assert st["memory"]["usage"]["limit"] == 64 * MIB
        assert "total" in st["cpu"]["usage"]

        m.freeze()
        assert m.frozen()
        m.thaw()
        assert not m.frozen()

        # The device rules bite: /dev/kmsg (c 1:11) is not allowed, /dev/null is.
        assert _probe_in(m, "/dev/kmsg") == os.strerror(1)
        assert _probe_in(m, "/dev/null") == "ok"
        os.write(w, b"x")
        os.waitpid(pid, 0)
        pid = None
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        CgroupManager.from_state(m.to_state()).destroy()
    for d in m.paths.values():
        assert not os.path.exists(d)
    # The per-test parent was created by this manager and was empty: gone too.
    parent = os.path.join(LAYOUT.mounts["memory"], ketch_env["KETCH_CGROUP_PARENT"])
    assert not os.path.exists(parent)


@pytest.mark.skipif("unified" not in LAYOUT.mounts, reason="no cgroup2 mount on this host")
def test_v2_device_filter_and_freeze(ketch_env):
    """The eBPF device filter on the cgroup2 tree (the hybrid host's unified mount works too)."""
    v2 = layout.Layout("v2", {"unified": LAYOUT.mounts["unified"]})
    m = manager_for(None, "v2c", layout=v2)
    m.create()
    try:
        try:
            m.set({"devices": [{"allow": False, "access": "rwm"}]})
        except FailedPrecondition as exc:
            pytest.skip(f"eBPF device filter unavailable here: {exc}")
        assert _probe_in(m, "/dev/kmsg") == os.strerror(1)
        assert _probe_in(m, "/dev/null") == "ok"
        pid, w = _child()
        m.add(pid)
        m.freeze()
        assert m.frozen()
        m.thaw()
        assert not m.frozen()
        os.write(w, b"x")
        os.waitpid(pid, 0)
    finally:
        m.destroy()
    assert not os.path.exists(m.paths["unified"])


def test_relative_and_absolute_paths_and_cleanup(ketch_env):
    parent = ketch_env["KETCH_CGROUP_PARENT"]
    a = manager_for(f"/{parent}/abs", "x")
    b = manager_for(f"{parent}/deep/rel/c", "y")
    a.create()
    b.create()
    try:
        assert all(os.path.isdir(d) for d in a.paths.values())
        assert all(d.endswith(f"/{parent}/deep/rel/c") for d in b.paths.values())
    finally:
        b.destroy()
        # b's intermediates went, a (sharing the parent) is untouched.
        assert not any(os.path.exists(os.path.dirname(os.path.dirname(d))) and
                       os.path.basename(os.path.dirname(os.path.dirname(d))) == "deep"
                       for d in b.paths.values())
        assert all(os.path.isdir(d) for d in a.paths.values())
        a.destroy()
    assert not any(os.path.exists(d) for d in a.paths.values())


def test_destroy_refuses_while_a_process_is_inside(ketch_env):
    m = manager_for(None, "busy")
    m.create()
    pid, w = _child()
    try:
        m.add(pid)
        with pytest.raises(FailedPrecondition, match="still busy"):
            m.destroy()
    finally:
        os.write(w, b"x")
        os.waitpid(pid, 0)
    m.destroy()
    assert not any(os.path.exists(d) for d in m.paths.values())


@pytest.mark.skipif("blkio" not in LAYOUT.mounts, reason="no v1 blkio controller")
def test_blkio_weight_maps_to_the_scheduler_that_exists(ketch_env):
    m = manager_for(None, "io")
    m.create()
    try:
        d = m.paths["blkio"]
        name = next((n for n in ("blkio.weight", "blkio.bfq.weight") if fs.exists(d, n)), None)
        if name is None:
            with pytest.raises(FailedPrecondition, match="blkio.weight"):
                m.set({"blockIO": {"weight": 300}})
        else:
            m.set({"blockIO": {"weight": 300}})
            assert fs.read(d, name).split()[-1] == "300"
        if not fs.exists(d, "blkio.leaf_weight"):  # CFQ is gone from current kernels
            with pytest.raises(FailedPrecondition, match="blkio.leaf_weight"):
                m.set({"blockIO": {"leafWeight": 300}})
    finally:
        m.destroy()


@pytest.mark.skipif("devices" not in LAYOUT.mounts, reason="no v1 devices controller")
def test_new_cgroup_denies_devices_by_default(ketch_env):
    m = manager_for(None, "dflt")
    m.create(devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    try:
        listing = fs.read(m.paths["devices"], "devices.list").splitlines()
        assert "a *:* rwm" not in listing
        assert {"c 1:3 rwm", "c 136:* rwm", "c 10:229 rwm"} <= set(listing)
        assert _probe_in(m, "/dev/kmsg") == os.strerror(1)
        assert _probe_in(m, "/dev/null") == "ok"
    finally:
        m.destroy()


def test_last_container_out_removes_a_shared_parent(ketch_env):
    """The parent made by the first container goes with the last one, whoever made it."""
    shared = f"{ketch_env['KETCH_CGROUP_PARENT']}/shared"
    first = manager_for(f"{shared}/a", "a")
    second = manager_for(f"{shared}/b", "b")
    first.create()
    second.create()
    assert any(d.endswith("/shared") for d in first.created)
    assert not any(d.endswith("/shared") for d in second.created)
    first.destroy()
    parent = os.path.join(LAYOUT.mounts["memory"] if "memory" in LAYOUT.mounts else
                          LAYOUT.mounts["unified"], shared)
    assert os.path.isdir(parent)  # still holds b
    second.destroy()
    assert not os.path.exists(parent)
