"""linux.seccomp: validation errors, the filter libseccomp builds, and the default profile."""

from __future__ import annotations

import copy
import os

import pytest

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.runtime import seccomp

GOOD = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["getcwd", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mkdirat"], "action": "SCMP_ACT_ALLOW"},  # same as default: skipped
    ],
}


def _bad(path: list, value, match: str, exc=InvalidArgument):
    spec = copy.deepcopy(GOOD)
    obj = spec
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
    with pytest.raises(exc, match=match):
        seccomp.validate(spec)


def test_valid_spec_passes():
    seccomp.validate(GOOD)
    seccomp.validate(None)


def test_each_bad_field_is_named():
    _bad(["defaultAction"], "SCMP_ACT_NOPE", r"defaultAction: unknown seccomp action")
    _bad(["architectures", 1], "SCMP_ARCH_Z80", r"architectures\[1\]: unknown architecture")
    _bad(["flags", 0], "SECCOMP_FILTER_FLAG_FAST", r"flags\[0\]: unknown seccomp flag")
    _bad(["syscalls", 0, "action"], "SCMP_ACT_MAYBE", r"syscalls\[0\].action")
    _bad(["syscalls", 1, "args", 0, "op"], "SCMP_CMP_ROUGHLY", r"syscalls\[1\].args\[0\].op")
    _bad(["syscalls", 1, "args", 0, "index"], 6, r"args\[0\].index: must be 0..5")
    _bad(["syscalls", 1, "args", 0, "value"], -1, r"args\[0\].value")
    _bad(["syscalls", 0, "names"], [], r"syscalls\[0\].names")
    _bad(["syscalls", 2, "errnoRet"], 1, r"errnoRet: only valid with SCMP_ACT_ERRNO")
    _bad(["defaultAction"], "SCMP_ACT_NOTIFY", "SCMP_ACT_NOTIFY is not supported", FailedPrecondition)


def _pfc(spec: dict, tmp_path) -> str:
    out = tmp_path / "filter.pfc"
    with open(out, "w") as f:
        seccomp.compile(spec).export_pfc(f)
    return out.read_text()


def test_compiled_filter_has_the_rules(tmp_path):
    text = _pfc(GOOD, tmp_path)
    assert "getcwd" in text and "ERRNO(95)" in text
    assert "personality" in text
    assert "mkdirat" not in text              # rule equal to the default action is dropped
    assert "no_such_syscall_xyz" not in text  # unknown names are ignored, as runc does
    assert f"arch x86 ({0x40000003})" in text  # the extra 32-bit x86 architecture


def test_same_index_twice_becomes_alternatives(tmp_path):
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}
    text = _pfc(spec, tmp_path)
    assert text.count("ERRNO(1)") == 2  # default errno EPERM, one rule per comparison


def test_default_profile_blocks_dangerous_syscalls():
    prof = seccomp.default_profile()
    seccomp.validate(prof)
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO" and prof["defaultErrnoRet"] == 1
    allowed = {n for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for n in r["names"]}
    for name in ("read", "write", "execve", "openat", "socket", "getcwd"):
        assert name in allowed
    for name in ("mount", "umount2", "kexec_load", "init_module", "finit_module", "delete_module",
                 "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "ptrace",
                 "clock_settime", "settimeofday", "adjtimex", "clock_adjtime", "swapon",
                 "swapoff", "reboot", "setns", "unshare", "clone", "personality"):
        assert name not in allowed, name
    conditional = {r["names"][0]: r for r in prof["syscalls"] if r.get("args")}
    assert conditional["unshare"]["args"][0]["value"] == 0x10000000  # no new user namespace
    assert conditional["clone"]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    clone3 = [r for r in prof["syscalls"] if r["names"] == ["clone3"]][0]
    assert clone3["errnoRet"] == 38  # ENOSYS: libc falls back to clone, whose flags are checked


def test_default_profile_follows_capabilities():
    prof = seccomp.default_profile(["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    allowed = {n for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for n in r["names"]}
    assert {"mount", "umount2", "setns", "unshare", "clone", "ptrace"} <= allowed
    assert "keyctl" not in allowed and "reboot" not in allowed


def test_default_profile_compiles(tmp_path):
    text = _pfc(seccomp.default_profile(), tmp_path)
    assert "action ERRNO(1)" in text or "ERRNO(1)" in text


def test_prepare_leaves_ctypes_util_alone():
    """The fast import must not leave its stand-in for ctypes.util behind."""
    import subprocess
    import sys

    code = ("import sys\nfrom ketch.runtime import seccomp\nseccomp.prepare()\n"
            "assert 'ctypes.util' not in sys.modules\n"
            "import ctypes.util\nassert ctypes.util.find_library('c')\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_cache_key_lookup_and_store(tmp_path, monkeypatch):
    from ketch.runtime import seccomp_cache

    monkeypatch.setenv("KETCH_RUNROOT", str(tmp_path))
    a = {"defaultAction": "SCMP_ACT_ALLOW"}
    b = {"defaultAction": "SCMP_ACT_LOG"}
    assert seccomp_cache.key(a) == seccomp_cache.key(dict(a)) != seccomp_cache.key(b)
    k = seccomp_cache.key(a)
    assert seccomp_cache.lookup(k) is None
    prog = seccomp_cache.export(seccomp.compile(a))
    assert len(prog) % 8 == 0 and prog
    seccomp_cache.store(k, prog)
    assert seccomp_cache.lookup(k) == prog
    assert sorted(os.listdir(seccomp_cache.directory())) == [f"{k}.bpf"]  # no temp file left
    assert oct(os.stat(seccomp_cache.directory()).st_mode & 0o777) == "0o700"
    with open(os.path.join(seccomp_cache.directory(), f"{k}.bpf"), "ab") as f:
        f.write(b"\x00")  # no longer whole instructions
    assert seccomp_cache.lookup(k) is None
    assert seccomp_cache.flags({"flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]}) == 3


def test_cache_ignores_entries_others_could_have_written(tmp_path, monkeypatch):
    from ketch.runtime import seccomp_cache

    monkeypatch.setenv("KETCH_RUNROOT", str(tmp_path))
    spec = {"defaultAction": "SCMP_ACT_ALLOW"}
    k = seccomp_cache.key(spec)
    seccomp_cache.store(k, seccomp_cache.export(seccomp.compile(spec)))
    assert seccomp_cache.lookup(k) is not None
    path = os.path.join(seccomp_cache.directory(), f"{k}.bpf")
    os.chmod(path, 0o666)
    assert seccomp_cache.lookup(k) is None
    os.chmod(path, 0o600)
    os.chmod(seccomp_cache.directory(), 0o777)
    assert seccomp_cache.lookup(k) is None


def test_container_init_path_imports_no_heavy_stdlib_modules():
    """Stage 1 and init run in a fresh interpreter per container start: each module
    they import is paid for on every start (platform alone pulls in re, enum and
    collections, ~5 ms here)."""
    import subprocess
    import sys

    code = ("import sys\nbefore = set(sys.modules)\n"
            "from ketch.runtime import bootstrap, init, seccomp, seccomp_cache, rootfs, caps, sync\n"
            "from ketch._sys import bpf, mount, ns, proc\n"
            "print(' '.join(sorted(set(sys.modules) - before)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = set(out.stdout.split())
    assert "ketch.runtime.init" in loaded, out.stderr
    heavy = {"re", "platform", "enum", "collections", "ctypes", "typing", "dataclasses",
             "pathlib", "subprocess", "json", "threading", "socket"}
    assert loaded & heavy == set()
