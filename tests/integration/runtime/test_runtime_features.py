"""What a container gets from config.json, observed from inside by busybox."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

from ketch.runtime import caps


def test_process_settings_are_applied(runc, bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("host\n")
    c = bundle.config
    c["hostname"] = "box1"
    c["domainname"] = "example.org"
    c["root"]["readonly"] = True
    c["process"].update(
        user={"uid": 1000, "gid": 1001, "additionalGids": [5, 7], "umask": 0o077},
        env=["PATH=/bin", "HELLO=world"], cwd="/tmp", oomScoreAdj=123, noNewPrivileges=True,
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}],
        capabilities={k: ["CAP_KILL", "CAP_NET_RAW"] for k in
                      ("bounding", "effective", "permitted", "inheritable", "ambient")})
    c["mounts"] += [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", "size=2m"]},
        {"destination": "/data", "type": "bind", "source": str(shared),
         "options": ["rbind", "ro"]},
    ]
    c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                              "fileMode": 0o600, "uid": 0, "gid": 0}]
    script = ("hostname; cat /proc/sys/kernel/domainname; id -u; id -g; id -G; umask; "
              "echo $HELLO; pwd; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; "
              "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status; "
              "touch /rootfile 2>/dev/null && echo rw-root || echo ro-root; "
              "touch /tmp/x && echo tmp-ok; cat /data/f; "
              "touch /data/g 2>/dev/null && echo rw-bind || echo ro-bind; "
              "wc -c < /proc/timer_list; "
              "echo 1 2>/dev/null > /proc/sys/kernel/ns_last_pid && echo rw-sys || echo ro-sys; "
              "stat -c '%t:%T %a' /dev/null /dev/fuse")
    c["process"]["args"] = ["sh", "-c", script]
    proc = runc.run(bundle)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    want_caps = f"{caps.mask({caps.CAPS['CAP_KILL'], caps.CAPS['CAP_NET_RAW']}):016x}"
    assert lines[:11] == ["box1", "example.org", "1000", "1001", "1001 5 7", "0077", "world",
                          "/tmp", "321", "654", "123"]
    status = dict(line.split(":\t") for line in lines[11:15])
    assert status == {"CapEff": want_caps, "CapBnd": want_caps, "CapAmb": want_caps,
                      "NoNewPrivs": "1"}
    assert lines[15:] == ["ro-root", "tmp-ok", "host", "ro-bind", "0", "ro-sys", "1:3 666",
                          "a:e5 600"]


def test_user_namespace_mapping(runc, bundle):
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.process["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map"]
    proc = runc.run(bundle)
    assert proc.returncode == 0, proc.stderr
    uid, mapping = proc.stdout.splitlines()
    assert uid == "0" and mapping.split() == ["0", "100000", "65536"]


def test_join_namespaces_by_path(runc, bundle, tmp_path):
    bundle.process["args"] = ["sleep", "60"]
    bundle.config["hostname"] = "first"
    bundle.save()
    runc("run", "-d", "--bundle", str(bundle.path), "a", check=True)
    try:
        pid = runc.state("a")["pid"]
        bundle.config.pop("hostname")
        for ns in bundle.linux["namespaces"]:
            if ns["type"] in ("uts", "network", "ipc"):
                ns["path"] = f"/proc/{pid}/ns/{ {'network': 'net'}.get(ns['type'], ns['type'])}"
        bundle.process["args"] = ["sh", "-c", "hostname; readlink /proc/self/ns/net"]
        proc = runc.run(bundle, "b")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["first", os.readlink(f"/proc/{pid}/ns/net")]
    finally:
        runc("delete", "--force", "a", check=True)


def test_hooks_get_state_on_stdin_in_order(runc, bundle, tmp_path):
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nread -r state\necho \"$1 $state\" >> {log}\n")
    hook.chmod(0o755)
    kinds = ["prestart", "createRuntime", "poststart", "poststop"]
    bundle.config["hooks"] = {k: [{"path": str(hook), "args": ["hook", k]}] for k in kinds}
    bundle.config["hooks"]["poststop"].append({"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]})
    bundle.config["annotations"] = {"k": "v"}
    proc = runc.run(bundle)
    assert proc.returncode == 0, proc.stderr
    entries = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [k for k, _ in entries] == kinds
    states = {k: json.loads(s) for k, s in entries}
    assert states["poststart"]["status"] == "running" and states["poststart"]["pid"] > 0
    assert states["poststop"]["status"] == "stopped"
    assert {s["id"] for s in states.values()} == {"c1"}
    assert states["prestart"]["annotations"] == {"k": "v"}
    assert "poststop hook #1" in proc.stderr  # a failing poststop hook is a warning


def test_hook_timeout_fails_create(runc, bundle):
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"],
                                                 "timeout": 1}]}
    proc = runc.run(bundle)
    assert proc.returncode == 1 and "timed out" in proc.stderr
    assert runc("list", "-q").stdout == ""


def test_terminal_master_arrives_over_console_socket(runc, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got: dict = {}

    def accept():
        conn, _ = srv.accept()
        msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        got["name"], got["fd"] = msg, fds[0]
        conn.close()
    t = threading.Thread(target=accept)
    t.start()
    bundle.process["terminal"] = True
    bundle.process["args"] = ["sh", "-c", "tty; echo on-the-pty"]
    bundle.save()
    runc("create", "--bundle", str(bundle.path), "--console-socket", path, "c1", check=True)
    t.join(10)
    srv.close()
    try:
        runc("start", "c1", check=True)
        out = b""
        while b"on-the-pty" not in out:
            try:
                chunk = os.read(got["fd"], 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(got["fd"])
        subprocess.run([runc.exe, "--root", runc.root, "delete", "--force", "c1"], check=True)
    assert got["name"].startswith(b"/dev/pts/")
    assert b"/dev/console" in out or b"/dev/pts/" in out
    assert b"on-the-pty" in out


def test_seccomp_rule_with_errno(runc, bundle):
    bundle.linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}]}
    bundle.process["noNewPrivileges"] = False  # the filter is loaded before caps are dropped
    bundle.process["args"] = ["sh", "-c", "grep ^Seccomp: /proc/self/status; mkdir /tmp/d"]
    proc = runc.run(bundle)
    assert proc.returncode == 1
    assert proc.stdout.split() == ["Seccomp:", "2"]
    assert "Permission denied" in proc.stderr  # errnoRet 13 = EACCES, not the default EPERM


def test_foreground_run_relays_its_own_terminal(runc, bundle):
    bundle.process["terminal"] = True
    bundle.process["args"] = ["sh", "-c", "tty; echo hi; exit 4"]
    proc = runc.run(bundle, stdin=subprocess.DEVNULL)
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.replace("\r", "").split() == ["/dev/pts/0", "hi"]
    detached = runc("run", "-d", "--bundle", str(bundle.path), "c2")
    assert detached.returncode == 1 and "--console-socket" in detached.stderr
    bundle.process.update(terminal=False, args=["sleep", "60"])
    bundle.save()
    runc("run", "-d", "--bundle", str(bundle.path), "c3", check=True)
    try:
        proc = runc("exec", "-t", "c3", "sh", "-c", "tty; exit 5", stdin=subprocess.DEVNULL)
        assert proc.returncode == 5, proc.stderr
        assert proc.stdout.replace("\r", "").split()[0].startswith("/dev/pts/")
    finally:
        runc("delete", "--force", "c3", check=True)


def test_a_new_network_namespace_has_lo_up(runc, bundle):
    """As runc: lo comes up in a network namespace the runtime creates (the kernel
    then gives it 127.0.0.1), which is what Docker's `--network none` shows."""
    assert any(n["type"] == "network" and not n.get("path")
               for n in bundle.config["linux"]["namespaces"])
    bundle.process["args"] = ["sh", "-c", "cat /sys/class/net/lo/flags; ls /sys/class/net"]
    proc = runc.run(bundle)
    assert proc.returncode == 0, proc.stderr
    flags, *links = proc.stdout.split()
    assert int(flags, 16) & 0x1 and links == ["lo"]   # IFF_UP; and nothing but lo
