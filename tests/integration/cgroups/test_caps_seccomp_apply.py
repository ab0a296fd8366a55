"""Capabilities and seccomp applied for real, each in a forked child.

The child reports what it observed through a pipe and exits; the parent
asserts. Probes are harmless: capability bits from /proc/self/status, errno
of getcwd/personality/unshare(CLONE_NEWUSER)/mkdir inside tmp_path.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal

from ketch.runtime import caps, seccomp


def in_child(fn) -> tuple[int, object]:
    """Run fn() in a forked child; returns (wait status, fn's JSON result or error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = {"ok": fn()}
        except BaseException as exc:  # noqa: BLE001 - report, never raise in the fork
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    data = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in data, data.get("error")
    return status, data.get("ok")


def test_drop_and_set_capabilities(ketch_env):
    def child():
        sets = caps.parse_spec({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        })
        caps.drop_bounding(sets["bounding"])
        caps.set_sets(sets["effective"], sets["permitted"], sets["inheritable"])
        caps.set_ambient(sets["ambient"])
        caps.no_new_privs()
        return caps.current()

    _, now = in_child(child)
    m = caps.mask
    assert now["bounding"] == m({0, 5, 6, 7, 10})
    assert now["effective"] == m({0, 5})
    assert now["permitted"] == m({0, 5, 10})
    assert now["inheritable"] == m({10})
    assert now["ambient"] == m({10})


def test_caps_survive_setuid_with_keepcaps(ketch_env):
    def child():
        keep = {caps.CAPS["CAP_KILL"], caps.CAPS["CAP_CHOWN"]}
        caps.drop_bounding(keep | {caps.CAPS["CAP_SETUID"], caps.CAPS["CAP_SETGID"]})
        caps.keep_caps(True)
        os.setgid(65534)
        os.setuid(65534)
        after_setuid = caps.current()["effective"]   # cleared by the kernel
        caps.keep_caps(False)
        caps.set_sets(keep, keep, set())
        return [after_setuid, caps.current()["effective"], os.getuid()]

    _, (after_setuid, effective, uid) = in_child(child)
    assert after_setuid == 0
    assert effective == caps.mask({caps.CAPS["CAP_KILL"], caps.CAPS["CAP_CHOWN"]})
    assert uid == 65534


def test_seccomp_errno_and_arguments(ketch_env, tmp_path):
    target = tmp_path / "never"

    def child():
        seccomp.load({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTSUP},
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
                 "args": [{"index": 0, "value": 0x0008, "op": "SCMP_CMP_EQ"}]},
            ]})
        out = {}
        try:
            os.getcwd()
        except OSError as exc:
            out["getcwd"] = exc.errno
        try:
            os.mkdir(target)
        except OSError as exc:
            out["mkdir"] = exc.errno
        libc = ctypes.CDLL(None, use_errno=True)
        out["query"] = libc.personality(0xFFFFFFFF) != -1          # other values pass
        out["per_linux32"] = ctypes.get_errno() if libc.personality(0x0008) == -1 else 0
        return out

    _, out = in_child(child)
    assert out == {"getcwd": errno.ENOTSUP, "mkdir": errno.EPERM, "query": True,
                   "per_linux32": errno.EACCES}
    assert not target.exists()


def test_seccomp_kill_process(ketch_env):
    def child():
        seccomp.load({"defaultAction": "SCMP_ACT_ALLOW",
                      "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]})
        os.getppid()
        return "survived"

    status, _ = in_child(child)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_default_profile_runs_programs_and_blocks_user_namespaces(ketch_env):
    def child():
        seccomp.load(seccomp.default_profile())
        libc = ctypes.CDLL(None, use_errno=True)
        unshare = ctypes.get_errno() if libc.unshare(0x10000000) == -1 else 0
        pid = os.fork()
        if pid == 0:
            os.execv("/bin/sh", ["sh", "-c", "exit 7"])
        _, status = os.waitpid(pid, 0)
        return [unshare, os.waitstatus_to_exitcode(status)]

    _, (unshare_errno, code) = in_child(child)
    assert unshare_errno == errno.EPERM
    assert code == 7


CACHED_PROBE = """
import errno, json, os, sys
from ketch.runtime import seccomp
spec = json.loads(sys.argv[1])
seccomp.prepare(spec)
print("pyseccomp" in sys.modules)
seccomp.load(spec)
try:
    os.getcwd()
    print(0)
except OSError as exc:
    print(exc.errno)
pid = os.fork()
if pid == 0:
    os.execv("/bin/sh", ["sh", "-c", "exit 7"])
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_prepared_filter_is_cached_and_loaded_without_libseccomp(ketch_env):
    import subprocess
    import sys

    from ketch.runtime import seccomp_cache

    spec = seccomp.default_profile()
    spec["syscalls"].insert(0, {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95})
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", CACHED_PROBE, json.dumps(spec)], capture_output=True, text=True,
        timeout=60).stdout.split()
    # First start compiles with libseccomp and fills the cache; the second does not need it.
    assert run() == ["True", "95", "7"]
    files = os.listdir(seccomp_cache.directory())
    assert files == [f"{seccomp_cache.key(spec)}.bpf"]
    assert run() == ["False", "95", "7"]
    # A damaged entry is ignored (and replaced), never loaded.
    with open(os.path.join(seccomp_cache.directory(), files[0]), "wb") as f:
        f.write(b"\x06\x00\x00")
    assert run() == ["True", "95", "7"]
    assert run() == ["False", "95", "7"]
