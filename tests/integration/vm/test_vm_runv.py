"""ketch-runv against real QEMU micro-VMs (TCG here): two boots cover the
lifecycle, exec, exit codes, streams and the bundle mapping; bad input is
checked without booting, or with a boot cut short by its deadline."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.integration.vm.conftest import make_bundle, vm_processes


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_vm_lifecycle_exec_and_exit_codes(runv, tmp_path: Path):
    bundle = make_bundle(tmp_path, ["sh", "-c", "echo started; echo to-stderr >&2; exec sleep 1000"])
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        created = runv("create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"),
                       "vm1", stdout=fo, stderr=fe, capture_output=False)
    assert created.returncode == 0, err.read_text()
    try:
        state = json.loads(runv("state", "vm1").stdout)
        assert state["status"] == "created"
        assert state["pid"] == int((tmp_path / "pid").read_text())
        assert os.path.exists(f"/proc/{state['pid']}")
        assert runv("start", "vm1").returncode == 0
        assert json.loads(runv("state", "vm1").stdout)["status"] == "running"
        assert _wait_for(lambda: out.read_bytes() == b"started\n" and err.read_bytes() == b"to-stderr\n")

        # QEMU and the shim live in the container's cgroup; pausing freezes the VM.
        qemu_pid = (runv.root / "vm1" / "qemu.pid").read_text()
        want = f"{os.environ['KETCH_CGROUP_PARENT']}/vm1"
        for pid in (qemu_pid, state["pid"]):
            assert want in Path(f"/proc/{pid}/cgroup").read_text()
        assert runv("pause", "vm1").returncode == 0
        assert json.loads(runv("state", "vm1").stdout)["status"] == "paused"
        assert runv("resume", "vm1").returncode == 0
        assert json.loads(runv("state", "vm1").stdout)["status"] == "running"
        event = json.loads(runv("events", "--stats", "vm1").stdout)
        assert (event["type"], event["id"]) == ("stats", "vm1")
        # The guest's RAM is QEMU's memory: the cgroup holds at least what the kernel touched.
        assert event["data"]["memory"]["usage"]["usage"] > 32 << 20

        r = runv("exec", "vm1", "sh", "-c", "echo o; echo e >&2; exit 7")
        assert (r.returncode, r.stdout, r.stderr) == (7, b"o\n", b"e\n")
        r = runv("exec", "vm1", "nosuchcommand")
        assert r.returncode == 127
        assert b'"nosuchcommand": executable file not found' in r.stderr
        r = runv("exec", "vm1", "/etc/passwd")
        assert r.returncode == 126
        assert runv("exec", "vm1", "sh", "-c", "kill -9 $$").returncode == 137
        r = runv("exec", "vm1", "cat", input=b"through stdin\n")
        assert (r.returncode, r.stdout) == (0, b"through stdin\n")
        r = runv("exec", "-e", "FOO=bar", "--cwd", "/tmp/new", "-u", "1000:1001", "vm1",
                 "sh", "-c", "echo $FOO $(pwd) $(id -u):$(id -g) $(hostname)")
        assert r.stdout == b"bar /tmp/new 1000:1001 vmtest\n", r.stderr
        # Every byte arrives before the exit code, however much there is.
        r = runv("exec", "vm1", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; exit 5")
        assert r.returncode == 5
        assert len(r.stdout) == 3000000 and set(r.stdout) == {ord("a")}

        assert runv("kill", "vm1", "KILL").returncode == 0
        assert _wait_for(lambda: json.loads(runv("state", "vm1").stdout)["status"] == "stopped")
        assert json.loads(runv("state", "vm1").stdout)["exitCode"] == 137
        assert runv("exec", "vm1", "true").returncode != 0
    finally:
        runv("delete", "--force", "vm1")
    assert not (runv.root / "vm1").exists()
    assert vm_processes(str(tmp_path)) == []


def test_vm_run_maps_the_bundle(runv, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    extra = tmp_path / "extra.conf"
    extra.write_text("a bound file\n")
    script = ("cat /data/in.txt; echo from the guest > /data/out.txt; cat /etc/extra.conf; "
              "touch /newfile 2>/dev/null && echo root-rw || echo root-ro; "
              "echo $(nproc) $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2); "
              "echo bye >&2; exit 3")
    bundle = make_bundle(
        tmp_path, ["sh", "-c", script],
        root={"path": "rootfs", "readonly": True},
        mounts=[{"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "rw"]},
                {"destination": "/etc/extra.conf", "type": "bind", "source": str(extra),
                 "options": ["rbind", "ro"]},
                {"destination": "/proc", "type": "proc", "source": "proc"}],
        linux={"resources": {"memory": {"limit": 256 << 20},
                             "cpu": {"quota": 150000, "period": 100000}}})
    r = runv("run", "--bundle", str(bundle), "vm2")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[:3] == ["from the host", "a bound file", "root-ro"]
    cpus, mem_kib = (int(x) for x in lines[3].split())
    assert cpus == min(2, os.cpu_count())
    assert 256 * 1024 < mem_kib <= (256 + 64) * 1024
    assert r.stderr == b"bye\n"
    assert (data / "out.txt").read_text() == "from the guest\n"
    assert not (runv.root / "vm2").exists()


def test_vm_bad_input_fails_before_boot(runv, tmp_path: Path):
    bundle = make_bundle(tmp_path, ["true"], mounts=[
        {"destination": "/data", "type": "bind", "source": str(tmp_path / "missing"), "options": ["rbind"]}])
    r = runv("run", "--bundle", str(bundle), "bad1")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == \
        f"ketch-runv: volume source '{tmp_path / 'missing'}': no such file or directory"
    assert not (runv.root / "bad1").exists()

    good = tmp_path / "good"
    good.mkdir()
    bundle = make_bundle(good, ["true"])
    r = runv("run", "--bundle", str(bundle), "bad2", env={**os.environ, "KETCH_VM_CACHE": str(tmp_path / "empty")})
    assert r.returncode == 1
    assert b"run `ketch vm kernel --install`" in r.stderr and r.stderr.count(b"\n") == 1
    r = runv("run", "--bundle", str(bundle), "bad3", env={**os.environ, "PATH": "/nonexistent"})
    assert r.returncode == 1
    assert b"qemu-system-x86_64 not found" in r.stderr and r.stderr.count(b"\n") == 1
    assert not (runv.root / "bad3").exists()


def test_vm_boot_deadline_reports_console_and_kills_qemu(runv, tmp_path: Path):
    bundle = make_bundle(tmp_path, ["true"])
    # A boot, not a restore from a snapshot: that can be ready within 0.3 s.
    env = {**os.environ, "KETCH_VM_BOOT_DEADLINE": "0.3", "KETCH_VM_SNAPSHOT": "0"}
    r = runv("run", "--bundle", str(bundle), "slow", env=env)
    assert r.returncode == 1
    msg = r.stderr.decode()
    assert msg.startswith("ketch-runv: micro-VM boot failed: guest did not boot within 0.3s")
    assert msg.count("\n") == 1
    assert not (runv.root / "slow").exists()
    # The same through create, where a separate shim boots the VM.
    r = runv("create", "--bundle", str(bundle), "slow2", env=env)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("ketch-runv: micro-VM boot failed: guest did not boot")
    assert r.stderr.count(b"\n") == 1
    assert not (runv.root / "slow2").exists()
    assert vm_processes(str(tmp_path)) == []


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vm_terminal_and_published_port(runv, tmp_path: Path):
    import select
    import socket
    import subprocess
    import threading
    import urllib.request

    port = _free_port()
    bundle = make_bundle(tmp_path, ["sh"], annotations={
        "ketch.vm.network": "user", "ketch.vm.ports": f"tcp:127.0.0.1:{port}-:8080"})
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = True
    (bundle / "config.json").write_text(json.dumps(config))
    www = bundle / "rootfs" / "www"
    www.mkdir()
    (www / "index.html").write_text("served from the guest\n")

    console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    console.bind(str(tmp_path / "console.sock"))
    console.listen(1)
    got = {}

    def receive():
        conn, _ = console.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        got["master"] = fds[0]
        conn.close()
    t = threading.Thread(target=receive)
    t.start()
    r = runv("create", "--bundle", str(bundle), "--console-socket", str(tmp_path / "console.sock"), "vm3")
    t.join(10)
    assert r.returncode == 0, r.stderr
    master = got["master"]
    try:
        assert runv("start", "vm3").returncode == 0
        os.write(master, b"httpd -p 8080 -h /www; tty; echo marker-$((6*7))\n")
        seen = b""
        deadline = time.monotonic() + 60
        while b"marker-42" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 4096)
        assert b"marker-42" in seen, seen
        assert b"/dev/pts/0" in seen
        body = None
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        assert body == b"served from the guest\n"

        # exec with a terminal, as the engine drives it: the pty master over a socket.
        console2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console2.bind(str(tmp_path / "console2.sock"))
        console2.listen(1)
        proc = subprocess.Popen([runv.binary, "--root", str(runv.root), "exec", "--tty",
                                 "--console-socket", str(tmp_path / "console2.sock"), "vm3",
                                 "sh", "-c", "tty; exit 5"])
        conn, _ = console2.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        conn.close()
        console2.close()
        seen = b""
        while select.select([fds[0]], [], [], 30)[0]:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        os.close(fds[0])
        assert proc.wait(60) == 5
        assert b"/dev/pts/1" in seen, seen
        os.write(master, b"exit 3\n")
        assert _wait_for(lambda: json.loads(runv("state", "vm3").stdout)["status"] == "stopped")
        assert json.loads(runv("state", "vm3").stdout)["exitCode"] == 3
    finally:
        os.close(master)
        console.close()
        runv("delete", "--force", "vm3")


def test_vm_guest_failure_reports_console_and_leaves_nothing(runv, tmp_path: Path):
    vol = tmp_path / "vol"
    vol.mkdir()
    # The destination lies under a regular file: the guest init cannot mount it.
    bundle = make_bundle(tmp_path, ["true"], mounts=[
        {"destination": "/bin/busybox/sub", "type": "bind", "source": str(vol), "options": ["rbind"]}])
    r = runv("run", "--bundle", str(bundle), "broken")
    assert r.returncode == 1
    msg = r.stderr.decode()
    assert msg.startswith("ketch-runv: micro-VM boot failed: guest init: mount volume ketchfs0 on "
                          "/bin/busybox/sub: "), msg
    assert "; console: " in msg and "ketch-init: mount volume" in msg.split("; console: ", 1)[1]
    assert msg.count("\n") == 1
    assert not (runv.root / "broken").exists()
    assert vm_processes(str(tmp_path)) == []
