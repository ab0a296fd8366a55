"""ketch-runc's verbs on a real busybox bundle: run, create/start/state/kill/delete, exec."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest


def wait_status(runc, cid: str, want: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = runc.state(cid)
        if state["status"] == want or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_run_passes_stdio_and_exit_status(runc, bundle):
    bundle.process["args"] = ["sh", "-c", "echo out; echo err >&2; exit 7"]
    proc = runc.run(bundle)
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "out\n", "err\n")
    assert runc("list", "-q").stdout == ""  # run removes the container


def test_lifecycle_create_start_kill_delete(runc, bundle, tmp_path):
    bundle.process["args"] = ["sleep", "60"]
    bundle.save()
    pidfile = tmp_path / "pid"
    runc("create", "--bundle", str(bundle.path), "--pid-file", str(pidfile), "c1", check=True)
    state = runc.state("c1")
    assert state["status"] == "created"
    assert state["pid"] == int(pidfile.read_text()) > 0
    assert state["bundle"] == str(bundle.path)
    assert "c1" in runc("list").stdout
    assert json.loads(runc("list", "--format", "json").stdout)[0]["id"] == "c1"
    # a created container is not deletable without --force (runtime-spec)
    assert runc("delete", "c1").returncode == 1
    runc("start", "c1", check=True)
    assert runc.state("c1")["status"] == "running"
    assert runc("start", "c1").returncode == 1  # only a created container starts
    exe = runc("exec", "c1", "sh", "-c", "echo in; exit 3")
    assert (exe.returncode, exe.stdout) == (3, "in\n")
    runc("pause", "c1", check=True)
    assert runc.state("c1")["status"] == "paused"
    runc("resume", "c1", check=True)
    stats = json.loads(runc("events", "--stats", "c1", check=True).stdout)
    assert stats["type"] == "stats" and "memory" in stats["data"]
    assert state["pid"] in json.loads(runc("ps", "--format", "json", "c1").stdout)
    runc("kill", "c1", "SIGKILL", check=True)
    assert wait_status(runc, "c1", "stopped")["status"] == "stopped"
    assert runc("kill", "c1", "TERM").returncode == 1  # kill of a stopped container errors
    runc("delete", "c1", check=True)
    assert runc("state", "c1").returncode == 1
    assert not os.listdir(runc.root)


def test_delete_force_and_duplicate_id(runc, bundle):
    bundle.process["args"] = ["sleep", "60"]
    bundle.save()
    runc("run", "-d", "--bundle", str(bundle.path), "c1", check=True)
    dup = runc("create", "--bundle", str(bundle.path), "c1")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    runc("delete", "--force", "c1", check=True)
    assert runc("list", "-q").stdout == ""


@pytest.mark.parametrize("content", [None, b"", b'{"id": "c1", "pi'])
def test_delete_force_removes_a_container_without_readable_state(runc, content):
    # What a crash between create's mkdir and its (unsynced) state write leaves.
    cdir = os.path.join(runc.root, "c1")
    os.makedirs(cdir)
    if content is not None:
        with open(os.path.join(cdir, "state.json"), "wb") as f:
            f.write(content)
    plain = runc("delete", "c1")
    assert plain.returncode == 1 and "c1" in plain.stderr
    assert os.path.isdir(cdir)
    runc("delete", "--force", "c1", check=True)
    assert not os.path.exists(cdir)


def test_delete_force_of_a_torn_state_stops_what_is_in_its_cgroup(runc):
    # create killed after init was ready but before it wrote state.json: init waits
    # on exec.fifo in the container's cgroup, and nothing else knows of it.
    from ketch.runtime.cgroups import manager_for
    cdir = os.path.join(runc.root, "t1")
    os.makedirs(cdir)
    cg = manager_for(None, "t1")
    cg.create()
    stray = subprocess.Popen(["sleep", "60"])
    try:
        cg.add(stray.pid)
        runc("delete", "--force", "t1", check=True)
        assert stray.wait(timeout=10) == -9
        assert not any(os.path.exists(d) for d in cg.paths.values())
        assert not os.path.exists(cdir)
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
        if any(os.path.exists(d) for d in cg.paths.values()):
            cg.destroy()


def test_exec_with_user_env_cwd(runc, bundle):
    bundle.process["args"] = ["sleep", "60"]
    bundle.save()
    runc("run", "-d", "--bundle", str(bundle.path), "c1", check=True)
    try:
        out = runc("exec", "-u", "65534:65534", "-e", "X=y", "--cwd", "/tmp", "c1",
                   "sh", "-c", "id -u; id -g; echo $X; pwd", check=True).stdout
        assert out.split() == ["65534", "65534", "y", "/tmp"]
        bad = runc("exec", "c1", "/no/such/program")
        assert bad.returncode == 1 and "/no/such/program" in bad.stderr
        # --process FILE: a whole runtime-spec process object instead of flags.
        procfile = bundle.path.parent / "process.json"
        procfile.write_text(json.dumps({"args": ["sh", "-c", "echo $P; pwd"], "cwd": "/proc",
                                        "env": ["P=from-file"], "user": {"uid": 0, "gid": 0}}))
        out = runc("exec", "--process", str(procfile), "c1", check=True).stdout
        assert out.split() == ["from-file", "/proc"]
        procfile.write_text('{"args": [')
        broken = runc("exec", "--process", str(procfile), "c1")
        assert broken.returncode == 1 and broken.stderr.count("\n") == 1
        assert broken.stderr.startswith(f"ketch-runc: --process {procfile}: ")
    finally:
        runc("delete", "--force", "c1", check=True)


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["linux"]["namespaces"].append({"type": "foo"}), "linux.namespaces[6].type"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "duplicate namespace"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_TEST"), "CAP_TEST"),
    (lambda c: c.pop("process"), "process"),
    (lambda c: c["root"].update(path="nonexistent"), "root.path"),
    (lambda c: c["process"].update(args=["/no/such/binary"]), "/no/such/binary"),
    (lambda c: c["mounts"].append({"destination": "/x", "type": "bind",
                                   "source": "/no/such/dir", "options": ["bind"]}),
     "/no/such/dir"),
])
def test_bad_config_fails_cleanly(runc, bundle, mutate, field):
    mutate(bundle.config)
    bundle.save()
    proc = runc("create", "--bundle", str(bundle.path), "bad")
    assert proc.returncode == 1
    assert field in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert runc("list", "-q").stdout == ""
    assert not os.path.exists(os.path.join(runc.root, "bad"))
    # mounts, cgroups and processes: the autouse no_leaks fixture checks them


def test_malformed_json(runc, bundle):
    (bundle.path / "config.json").write_text("{")
    proc = runc("create", "--bundle", str(bundle.path), "bad")
    assert proc.returncode == 1 and "invalid JSON" in proc.stderr


def test_no_pivot_update_and_detached_exec(runc, bundle, tmp_path):
    bundle.process["args"] = ["sleep", "60"]
    bundle.save()
    runc("run", "-d", "--no-pivot", "--bundle", str(bundle.path), "c1", check=True)
    try:
        runc("update", "--memory", str(96 << 20), "--pids-limit", "50", "c1", check=True)
        limits = runc("exec", "c1", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                      "/sys/fs/cgroup/pids/pids.max", check=True).stdout.split()
        assert limits == [str(96 << 20), "50"]
        pidfile = tmp_path / "exec.pid"
        runc("exec", "-d", "--pid-file", str(pidfile), "c1", "sleep", "30", check=True)
        assert int(pidfile.read_text()) in json.loads(runc("ps", "--format", "json", "c1").stdout)
        assert runc("update", "--memory", "lots", "c1").returncode == 1
    finally:
        runc("delete", "--force", "c1", check=True)
