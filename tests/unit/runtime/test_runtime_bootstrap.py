"""Stage 1's fork of init into its cgroup, and the way back when clone3 cannot.

The system calls are the boundary here: clone3 is replaced by a stand-in that
fails as an old kernel would, and the cgroup files are plain files in a temp
dir, so the fallback's order (move ourselves, then fork) is what is checked.
"""

from __future__ import annotations

import errno
import os
import sys

import pytest

from ketch._sys import proc
from ketch.runtime import bootstrap


@pytest.fixture
def dirs(tmp_path):
    v1 = [tmp_path / "memory" / "c1", tmp_path / "pids" / "c1"]
    v2 = tmp_path / "unified" / "c1"
    for d in (*v1, v2):
        d.mkdir(parents=True)
        (d / "tasks").write_text("")
        (d / "cgroup.procs").write_text("")
    return {"v1": [str(d) for d in v1], "v2": str(v2)}


def test_v1_dirs_are_joined_by_writing_0_to_tasks(dirs):
    bootstrap._join_v1(dirs)
    try:
        for d in dirs["v1"]:
            assert open(os.path.join(d, "tasks")).read() == "0"
            assert open(os.path.join(d, "cgroup.procs")).read() == ""
        assert os.path.samefile(f"/proc/self/fd/{dirs['fd']}", dirs["v2"])
        assert os.path.samefile(f"/proc/self/fd/{dirs['procs']}",
                                os.path.join(dirs["v2"], "cgroup.procs"))
    finally:
        os.close(dirs["fd"])
        os.close(dirs["procs"])


def test_without_clone3_stage_1_moves_itself_then_forks(dirs, monkeypatch):
    calls = []

    def no_clone3(fd):
        calls.append(("clone3", fd))
        raise OSError(errno.ENOSYS, "clone3 into cgroup: Function not implemented")

    def fork():
        calls.append(("fork", open(os.path.join(dirs["v2"], "cgroup.procs")).read()))
        return 4242

    monkeypatch.setattr(proc, "fork_into_cgroup", no_clone3)
    monkeypatch.setattr(os, "fork", fork)
    dirs["fd"] = 99
    dirs["procs"] = os.open(os.path.join(dirs["v2"], "cgroup.procs"), os.O_WRONLY)
    try:
        assert bootstrap._fork(dirs) == 4242
    finally:
        os.close(dirs["procs"])
    # Moved into the cgroup2 dir (by "0": ourselves) before the fork, so init is born there.
    assert calls == [("clone3", 99), ("fork", "0")]


def test_with_clone3_nothing_is_moved(dirs, monkeypatch):
    monkeypatch.setattr(proc, "fork_into_cgroup", lambda fd: 4343)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("plain fork with clone3 available"))
    dirs["fd"] = 99
    assert bootstrap._fork(dirs) == 4343
    assert open(os.path.join(dirs["v2"], "cgroup.procs")).read() == ""


def test_pure_v1_and_the_parent_moved_paths_fork_plainly(monkeypatch):
    monkeypatch.setattr(proc, "fork_into_cgroup", lambda fd: pytest.fail("clone3 without v2"))
    monkeypatch.setattr(os, "fork", lambda: 4444)
    assert bootstrap._fork({"v1": ["/x"], "v2": None}) == 4444
    assert bootstrap._fork(None) == 4444


class _NoImports:
    """A meta path finder that refuses every import not already loaded."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        raise ImportError(f"import of {name} after the fork")


def test_lo_up_is_loaded_before_init_can_pivot_our_root_away(monkeypatch):
    # Stage 1 brings lo up after forking init, by which time init may have pivoted
    # the mount namespace's root (ours too): everything must be imported before.
    for name in ("ketch._sys.netif", "_socket"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    up = bootstrap._lo_up()
    from ketch._sys import netif
    seen = []

    def ioctl(fd, request, arg):   # lo reads as up already: nothing is set on the host
        seen.append(request)
        return arg[:16] + netif.IFF_UP.to_bytes(2, sys.byteorder) + arg[18:]

    monkeypatch.setattr(netif.fcntl, "ioctl", ioctl)
    monkeypatch.setattr(sys, "meta_path", [_NoImports()])
    up()
    assert seen == [netif.SIOCGIFFLAGS]
