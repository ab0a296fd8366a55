"""Integration tier: real namespaces, cgroups, mounts; root only.

Every test gets its own KETCH_ROOT, KETCH_RUNROOT, ketch-runc --root and
cgroup parent (ketch/t-<id>), so tests never share state, and the autouse
`no_leaks` fixture fails a test that leaves behind a mount under its
directories, a cgroup under its parent, a ketch cgroup anywhere outside the
`ketch` parents (e.g. under the host's own cgroups), a process that
carries its test id or names its directories, or a network link (bridge,
veth) or nftables table named for its root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import need_root

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _mount_points(prefixes: list[str]) -> set[str]:
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if any(mnt == p or mnt.startswith(p + "/") for p in prefixes):
                found.add(mnt)
    return found


def _cgroup_dirs(parent: str) -> set[Path]:
    found = set()
    for hier in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()] if CGROUP_ROOT.exists() else []:
        base = hier / parent
        if base.is_dir():
            for dirpath, dirnames, _ in os.walk(base):
                for d in dirnames:
                    found.add(Path(dirpath) / d)
    return found


def _net_names() -> tuple[tuple[str, ...], str]:
    """(link name prefixes, nft table) that ketch derives from this test's root."""
    from ketch.network import host
    return (host.veth_prefix(), host.bridge_prefix(), host.peer_prefix(),
            host.default_bridge_name()), host.table_name()


def _net_leftovers(prefixes: tuple[str, ...], table: str,
                   net_dir: str = "/sys/class/net") -> tuple[list[str], list[str]]:
    links = [n for n in os.listdir(net_dir) if n.startswith(prefixes)]
    try:
        out = subprocess.run(["nft", "list", "tables", "ip"], capture_output=True,
                             text=True).stdout
    except FileNotFoundError:
        out = ""
    tables = [ln.split()[-1] for ln in out.splitlines()
              if ln.startswith("table") and ln.split()[-1] == table]
    return links, tables


def _stray_cgroups() -> set[Path]:
    """Cgroups named ketch* that are NOT <hierarchy>/ketch itself or below it.

    A relative cgroup path resolved against a process's own cgroup (as runc
    does) would put them under the host's cgroups (here, memory:/process_api/...),
    which are not ours to touch.
    """
    found = set()
    if not CGROUP_ROOT.exists():
        return found
    hierarchies = {CGROUP_ROOT, *CGROUP_ROOT.iterdir()}
    for hier in hierarchies:
        if not hier.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(hier):
            here = Path(dirpath)
            if here == hier / "ketch" or (hier / "ketch") in here.parents:
                dirnames[:] = []
                continue
            for d in dirnames:
                if d.startswith("ketch") and here not in hierarchies:
                    found.add(here / d)
    return found


def _ketch_parents() -> set[Path]:
    """The `ketch` parent cgroup of every hierarchy, where it exists."""
    if not CGROUP_ROOT.exists():
        return set()
    return {h / "ketch" for h in (CGROUP_ROOT, *CGROUP_ROOT.iterdir()) if (h / "ketch").is_dir()}


@pytest.fixture(scope="session", autouse=True)
def ketch_parents_made_by_the_session():
    """Each test's cgroups live under ketch/t-<id> and go with the test (no_leaks);
    the shared `ketch` parents the session made on the way go at its end. rmdir
    only removes an empty directory, and parents that were there before stay
    (they are the engine's own, as /docker is Docker's)."""
    before = _ketch_parents()
    yield
    for d in _ketch_parents() - before:
        try:
            d.rmdir()
        except OSError:
            pass


def _processes(test_id: str, prefixes: list[str]) -> set[int]:
    mine = os.getpid()
    found = set()
    tag = f"KETCH_TEST_ID={test_id}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == mine:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if tag in env.split(b"\0") or any(p in cmd for p in prefixes):
            found.add(int(entry))
    return found


def _remove_cgroup_tree(parent: str) -> None:
    for hier in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]:
        base = hier / parent
        if not base.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


@pytest.fixture
def ketch_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The per-test roots, also exported to every command the test runs."""
    need_root()
    test_id = uuid.uuid4().hex[:10]
    env = {
        "KETCH_ROOT": str(tmp_path / "root"),
        "KETCH_RUNROOT": str(tmp_path / "run"),
        "KETCH_RUNC_ROOT": str(tmp_path / "runc"),
        "KETCH_CGROUP_PARENT": f"ketch/t-{test_id}",
        "KETCH_TEST_ID": test_id,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest, ketch_env: dict[str, str], tmp_path: Path):
    """Fail the test if it leaves a mount, cgroup or process behind; then clean up."""
    prefixes = [str(tmp_path)]
    parent = ketch_env["KETCH_CGROUP_PARENT"]
    stray_before = _stray_cgroups()
    net_prefixes, table = _net_names()
    yield
    leaks = []
    # Give exiting processes a moment to be reaped before judging.
    deadline = time.monotonic() + 3
    while True:
        procs = _processes(ketch_env["KETCH_TEST_ID"], prefixes)
        mounts = _mount_points(prefixes)
        cgroups = _cgroup_dirs(parent)
        links, tables = _net_leftovers(net_prefixes, table)
        if not (procs or mounts or cgroups or links or tables) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if procs:
        leaks.append(f"processes {sorted(procs)}")
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if mounts:
        leaks.append(f"mounts {sorted(mounts)}")
        for m in sorted(mounts, key=len, reverse=True):
            os.system(f"umount -l '{m}' 2>/dev/null")
    if cgroups:
        leaks.append(f"cgroups {sorted(str(c) for c in cgroups)}")
    if links or tables:
        leaks.append(f"network links {links}, nft tables {tables}")
        for name in links:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        for t in tables:
            subprocess.run(["nft", "delete", "table", "ip", t], capture_output=True)
    stray = _stray_cgroups() - stray_before
    if stray:
        leaks.append(f"cgroups outside the ketch parent {sorted(str(c) for c in stray)}")
    time.sleep(0.05 if procs else 0)
    _remove_cgroup_tree(parent)
    if leaks:
        shutil.rmtree(tmp_path, ignore_errors=True)
        pytest.fail("leaked: " + "; ".join(leaks), pytrace=False)
