"""How a container's processes get into its cgroup (create.py, bootstrap.py).

Stage 1 moves itself into the v1 hierarchies (a single thread writing "0" to
`tasks`) and clones init straight into its cgroup2 directory (clone3 with
CLONE_INTO_CGROUP): no process is moved by pid, so create never waits on the
kernel's migration lock. A new user namespace (or a joined user or cgroup
namespace) takes the older way: the parent moves stage 1 by pid first.
Either way init must end up in the container's directory of every hierarchy.
"""

from __future__ import annotations

import os
import re
import subprocess

from ketch.runtime.cgroups.layout import detect
from tests.conftest import need_tool


def _hierarchies() -> list[str]:
    """The hierarchy names /proc/<pid>/cgroup uses: "" for cgroup2, else the controllers."""
    names = []
    with open("/proc/self/cgroup") as f:
        for line in f.read().splitlines():
            names.append(line.split(":")[1])
    return names


def _cgroups_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.split(":")[1]: line.split(":", 2)[2] for line in f.read().splitlines()}


def _run_sleeping(runc, bundle, cid: str) -> int:
    bundle.process["args"] = ["sleep", "60"]
    bundle.save()
    runc("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    return runc.state(cid)["pid"]


def test_init_is_in_its_cgroup_in_every_hierarchy(runc, bundle, ketch_env):
    pid = _run_sleeping(runc, bundle, "c1")
    try:
        want = f"/{ketch_env['KETCH_CGROUP_PARENT']}/c1"
        got = _cgroups_of(pid)
        assert set(got) == set(_hierarchies())
        assert {name: path for name, path in got.items() if path != want} == {}
        # Inside, a new cgroup namespace is rooted there: every hierarchy reads "/".
        inside = runc("exec", "c1", "cat", "/proc/self/cgroup", check=True).stdout
        assert {line.split(":", 2)[2] for line in inside.split()} == {"/"}
    finally:
        runc("delete", "--force", "c1", check=True)


def test_user_namespace_container_is_moved_by_the_parent(runc, bundle, ketch_env):
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    pid = _run_sleeping(runc, bundle, "u1")
    try:
        want = f"/{ketch_env['KETCH_CGROUP_PARENT']}/u1"
        assert set(_cgroups_of(pid).values()) == {want}
    finally:
        runc("delete", "--force", "u1", check=True)


def _traced(runc, tmp_path, *args: str) -> str:
    need_tool("strace")
    trace = tmp_path / "trace"
    proc = subprocess.run(["strace", "-f", "-qq", "-y", "-s", "32", "-e", "trace=write,clone3",
                           "-o", str(trace), runc.exe, "--root", runc.root, *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return trace.read_text()


def _assert_no_pid_moved(text: str) -> None:
    """No pid is written to a cgroup.procs file (that write waits for an RCU grace
    period on v1 and hybrid hosts); where there is a cgroup2 hierarchy, the new
    process is cloned into it."""
    cgroup_writes = re.findall(r'write\(\d+<(/sys/fs/cgroup/[^>]*/(?:cgroup\.procs|tasks))>, '
                               r'"([^"]*)"', text)
    layout = detect()
    v1_mounts = {m for k, m in layout.mounts.items() if k != "unified"}
    assert bool(cgroup_writes) == bool(v1_mounts), text   # pure cgroup2: no write at all
    assert {value for _path, value in cgroup_writes} <= {"0"}, cgroup_writes
    v1 = {path for path, _value in cgroup_writes if path.endswith("/tasks")}
    assert len(v1) == len(v1_mounts)
    if "unified" in layout.mounts:
        assert "CLONE_INTO_CGROUP" in text


def test_create_moves_no_process_by_pid(runc, bundle, tmp_path):
    bundle.save()
    _assert_no_pid_moved(_traced(runc, tmp_path, "run", "--bundle", str(bundle.path), "s1"))


def test_exec_moves_no_process_by_pid(runc, bundle, tmp_path):
    _run_sleeping(runc, bundle, "e1")
    try:
        _assert_no_pid_moved(_traced(runc, tmp_path, "exec", "e1", "true"))
    finally:
        runc("delete", "--force", "e1", check=True)


def test_a_config_error_after_the_cgroup_is_made_leaves_nothing(runc, bundle, ketch_env):
    # The cgroup is made before the config is fully checked (create.py): an error
    # found then must still remove it (the no_leaks fixture checks the rest).
    bundle.process["capabilities"] = {"bounding": ["CAP_TEST"]}
    proc = runc.run(bundle, "bad")
    assert proc.returncode == 1 and "CAP_TEST" in proc.stderr
    for mount in set(detect().mounts.values()):
        assert not os.path.exists(os.path.join(mount, ketch_env["KETCH_CGROUP_PARENT"], "bad"))
    assert not os.path.exists(os.path.join(runc.root, "bad"))
