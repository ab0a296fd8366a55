"""A fake cgroup v1 / v2 tree in tmp: directories and the interface files a kernel would show.

Real cgroupfs creates the files of every controller in each new directory;
here os.mkdir is wrapped so a directory made under the fake root gets them,
with the kernel's defaults. Files listed in `tree.missing` are not created,
as on a host that lacks the knob.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ketch.runtime.cgroups import devices, fs
from ketch.runtime.cgroups.layout import Layout

V1_FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1",
            "cpu.cfs_burst_us": "0", "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0",
            "cpu.idle": "0", "cpu.stat": "nr_periods 7\nnr_throttled 2\nthrottled_time 900\n"},
    "cpuacct": {"cpuacct.usage": "5000", "cpuacct.usage_percpu": "3000 2000 ",
                "cpuacct.stat": "user 3\nsystem 1\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": "9223372036854771712",
               "memory.soft_limit_in_bytes": "9223372036854771712",
               "memory.memsw.limit_in_bytes": "9223372036854771712",
               "memory.kmem.tcp.limit_in_bytes": "9223372036854771712",
               "memory.swappiness": "60", "memory.oom_control": "oom_kill_disable 0",
               "memory.use_hierarchy": "1", "memory.usage_in_bytes": "4096",
               "memory.max_usage_in_bytes": "8192", "memory.failcnt": "0",
               "memory.stat": "cache 100\nrss 200\ntotal_cache 100\n"},
    "pids": {"pids.max": "max", "pids.current": "3"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
              "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n"},
}
V2_FILES = {
    "cgroup.controllers": "cpuset cpu io memory pids", "cgroup.subtree_control": "",
    "cgroup.procs": "", "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n",
    "memory.max": "max", "memory.high": "max", "memory.swap.max": "max", "memory.low": "0", "memory.current": "12288",
    "memory.events": "low 0\nhigh 0\nmax 4\noom 0\n", "memory.stat": "anon 100\nfile 300\n",
    "cpu.weight": "100", "cpu.max": "max 100000", "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\n",
    "cpuset.cpus": "", "cpuset.mems": "", "pids.max": "max", "pids.current": "1", "io.weight": "default 100",
    "io.max": "", "io.stat": "8:0 rbytes=4096 wbytes=512 rios=1 wios=2 dbytes=0 dios=0\n",
}


class FakeTree:
    def __init__(self, root: Path, mode: str):
        self.root = root
        self.mode = mode
        self.missing: set[str] = set()
        if mode == "v2":
            self.layout = Layout("v2", {"unified": str(root)})
            root.mkdir(parents=True, exist_ok=True)
            self._fill(root, V2_FILES)
        else:
            mounts = {}
            for ctrl, files in V1_FILES.items():
                d = root / ctrl
                d.mkdir(parents=True)
                self._fill(d, files | {"cgroup.procs": ""})
                mounts[ctrl] = str(d)
            (root / "cpuset" / "cpuset.cpus").write_text("0-1\n")
            (root / "cpuset" / "cpuset.mems").write_text("0\n")
            if mode == "hybrid":
                (root / "unified").mkdir()
                self._fill(root / "unified", {"cgroup.procs": "", "cgroup.freeze": "0"})
                mounts["unified"] = str(root / "unified")
            self.layout = Layout(mode, mounts)

    @staticmethod
    def _fill(d: Path, files: dict[str, str]) -> None:
        for name, text in files.items():
            (d / name).write_text(text)

    def populate(self, d: str) -> None:
        """Create the interface files of a new directory, as the kernel would."""
        p = Path(d)
        if self.mode == "v2":
            files = dict(V2_FILES)
        else:
            ctrl = p.relative_to(self.root).parts[0]
            files = dict(V1_FILES.get(ctrl, {})) | {"cgroup.procs": ""}
            if ctrl == "unified":
                files = {"cgroup.procs": "", "cgroup.freeze": "0"}
        for name, text in files.items():
            if name not in self.missing and not (p / name).exists():
                (p / name).write_text(text)

    @staticmethod
    def read(directory: str, name: str) -> str:
        return fs.read(directory, name)


def _tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> FakeTree:
    tree = FakeTree(tmp_path / "cgroup", mode)
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777, *args, **kwargs):
        real_mkdir(path, mode, *args, **kwargs)
        if str(path).startswith(str(tree.root) + "/"):
            tree.populate(str(path))

    monkeypatch.setattr(os, "mkdir", mkdir)
    return tree


@pytest.fixture
def v1tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTree:
    return _tree(tmp_path, monkeypatch, "v1")


@pytest.fixture
def hybridtree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTree:
    return _tree(tmp_path, monkeypatch, "hybrid")


@pytest.fixture
def v2tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTree:
    """A v2 tree; the eBPF device filter (a kernel boundary) is recorded, not loaded."""
    tree = _tree(tmp_path, monkeypatch, "v2")
    tree.filters = []

    def apply_v2(directory, rules, extra=()):
        tree.filters.append((directory, devices.program(rules, extra)))

    monkeypatch.setattr(devices, "apply_v2", apply_v2)
    return tree


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Record every cgroup file write (file name, value, directory basename), in order."""
    log: list[tuple[str, str, str]] = []
    real = fs.write

    def recording(directory, name, value, field=None):
        log.append((name, str(value), directory))
        real(directory, name, value, field)

    monkeypatch.setattr(fs, "write", recording)
    return log
