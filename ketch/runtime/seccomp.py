"""runtime-spec linux.seccomp -> a libseccomp filter (through pyseccomp).

validate() runs at create time in the parent and needs no library: it checks
every action, operator, architecture and flag name, so a bad spec fails
before anything is created. compile() builds the filter and load() installs
it; the init calls load() as late as possible before execve.

pyseccomp is imported lazily (only containers with a seccomp section pay for
it) and it dlopen()s libseccomp when imported, so init must call prepare()
while the host filesystem is still visible, i.e. before pivot_root; after
that compile()/load() work from memory. prepare(spec) goes further: it takes
the compiled program from the cache (seccomp_cache.py) or compiles and
caches it, and load(spec) then installs those bytes with seccomp(2) without
libseccomp at all.

Semantics follow runc where the spec is silent:
* syscall names libseccomp does not know are ignored (profiles list syscalls
  of newer kernels or other architectures); unknown actions, operators,
  architectures and flags are errors;
* a rule whose action equals defaultAction is skipped (libseccomp refuses it);
* SCMP_ACT_ERRNO and SCMP_ACT_TRACE return EPERM unless errnoRet /
  defaultErrnoRet say otherwise; errnoRet with any other action is an error;
* args naming the same index twice become one rule per arg (OR), since
  libseccomp cannot AND two comparisons on one argument; otherwise all args
  of a rule are ANDed in one rule;
* the filter does not set no_new_privs itself (CTL_NNP off): that is
  process.noNewPrivileges's job, done by init;
* SCMP_ACT_NOTIFY needs a seccomp agent at listenerPath, which ketch does not
  implement: FailedPrecondition.
"""

from __future__ import annotations

import errno as _errno

from ketch.errors import FailedPrecondition, InvalidArgument

ACTIONS = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
)
OPERATORS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
# AUDIT_ARCH_* tokens (linux/audit.h): ELF machine | 64-bit | little-endian bits.
_LE, _64, _N32 = 0x40000000, 0x80000000, 0x20000000
ARCHES = {
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _64,
    "SCMP_ARCH_MIPS64N32": 8 | _64 | _N32,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _64 | _LE | _N32,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _64,
    "SCMP_ARCH_PPC64LE": 21 | _64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _64,
    "SCMP_ARCH_RISCV64": 243 | _64 | _LE,
    "SCMP_ARCH_LOONGARCH64": 258 | _64 | _LE,
}
# runtime-spec flag -> libseccomp filter attribute (SCMP_FLTATR_*) set to 1.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 4,        # CTL_TSYNC
    "SECCOMP_FILTER_FLAG_LOG": 6,          # CTL_LOG
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,   # CTL_SSB
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 10,  # CTL_WAITKILL (libseccomp >= 2.6)
}
_ATTR_CTL_NNP = 3


def _check_errno(value: object, field: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise InvalidArgument(f"{field}: errno must be an integer 0..65535, not {value!r}")


def _check_action(action: object, field: str, errno_ret: object, errno_field: str) -> None:
    if action not in ACTIONS:
        raise InvalidArgument(f"{field}: unknown seccomp action {action!r}")
    if action == "SCMP_ACT_NOTIFY":
        raise FailedPrecondition(
            f"{field}: SCMP_ACT_NOTIFY is not supported by ketch-runc (no seccomp agent)"
        )
    if errno_ret is not None and action not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        raise InvalidArgument(f"{errno_field}: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
    _check_errno(errno_ret, errno_field)


def _check_arg(arg: object, field: str) -> None:
    if not isinstance(arg, dict):
        raise InvalidArgument(f"{field}: must be an object")
    index = arg.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
        raise InvalidArgument(f"{field}.index: must be 0..5, not {index!r}")
    if arg.get("op") not in OPERATORS:
        raise InvalidArgument(f"{field}.op: unknown seccomp operator {arg.get('op')!r}")
    for key in ("value", "valueTwo"):
        v = arg.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 64:
            raise InvalidArgument(f"{field}.{key}: must be an unsigned 64-bit integer, not {v!r}")


def validate(seccomp: dict | None) -> None:
    """Check a linux.seccomp object; raise InvalidArgument naming the bad field."""
    if seccomp is None:
        return
    if not isinstance(seccomp, dict):
        raise InvalidArgument("linux.seccomp: must be an object")
    if "listenerPath" in seccomp and seccomp["listenerPath"]:
        raise FailedPrecondition("linux.seccomp.listenerPath: seccomp agents are not supported")
    _check_action(seccomp.get("defaultAction"), "linux.seccomp.defaultAction",
                  seccomp.get("defaultErrnoRet"), "linux.seccomp.defaultErrnoRet")
    for i, arch in enumerate(seccomp.get("architectures") or []):
        if arch not in ARCHES:
            raise InvalidArgument(f"linux.seccomp.architectures[{i}]: unknown architecture {arch!r}")
    for i, flag in enumerate(seccomp.get("flags") or []):
        if flag not in FLAGS:
            raise InvalidArgument(f"linux.seccomp.flags[{i}]: unknown seccomp flag {flag!r}")
    for i, rule in enumerate(seccomp.get("syscalls") or []):
        field = f"linux.seccomp.syscalls[{i}]"
        if not isinstance(rule, dict):
            raise InvalidArgument(f"{field}: must be an object")
        names = rule.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise InvalidArgument(f"{field}.names: must be a non-empty list of syscall names")
        _check_action(rule.get("action"), f"{field}.action", rule.get("errnoRet"), f"{field}.errnoRet")
        for j, arg in enumerate(rule.get("args") or []):
            _check_arg(arg, f"{field}.args[{j}]")


def prepare(seccomp: dict | None = None) -> object | None:
    """Get ready to load() after pivot_root; returns pyseccomp when it was imported.

    Without a spec: import pyseccomp (loading libseccomp). With one: also
    have its compiled program at hand (cached or freshly compiled), so
    load(spec) needs no library.
    """
    global _ready
    if seccomp is None:
        return _import()
    from ketch.runtime import seccomp_cache

    k = seccomp_cache.key(seccomp)
    prog = seccomp_cache.lookup(k)
    sc = None
    if prog is None:
        sc = _import()
        prog = seccomp_cache.export(compile(seccomp))
        seccomp_cache.store(k, prog)
    _ready = (seccomp, prog, seccomp_cache.flags(seccomp))
    return sc


_ready: tuple[dict, bytes, int] | None = None


def _import() -> object:
    import sys

    if "pyseccomp" not in sys.modules:
        try:
            _import_fast()
        except OSError:
            pass  # not the usual sonames: let pyseccomp search
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: no libseccomp found
        raise FailedPrecondition(f"seccomp: libseccomp is not available: {exc}") from exc
    return pyseccomp


def _import_fast() -> None:
    """Import pyseccomp without ctypes.util when the standard sonames load.

    pyseccomp resolves libc and libseccomp with ctypes.util.find_library,
    whose import (subprocess, tempfile, shutil) and ldconfig fork cost tens
    of milliseconds per container start. Their sonames are stable, so for
    the import only, ctypes.util is a stand-in that knows them; the real
    module is untouched (and used if it was already imported).
    """
    import ctypes
    import sys
    import types

    if "ctypes.util" in sys.modules:
        real = sys.modules["ctypes.util"].find_library
        known = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
        stub = types.SimpleNamespace(find_library=lambda n: known.get(n) or real(n))
    else:
        ctypes.CDLL("libseccomp.so.2")  # OSError here: fall back to the real search
        stub = types.ModuleType("ctypes.util")
        stub.find_library = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}.get
    saved = sys.modules.get("ctypes.util"), getattr(ctypes, "util", None)
    sys.modules["ctypes.util"], ctypes.util = stub, stub
    try:
        import pyseccomp  # noqa: F401
    finally:
        if saved[0] is None:
            del sys.modules["ctypes.util"]
            del ctypes.util
        else:
            sys.modules["ctypes.util"], ctypes.util = saved


def _action(sc: object, action: str, errno_ret: int | None) -> int:
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return sc.KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return sc.KILL_PROCESS
    if action == "SCMP_ACT_ERRNO":
        return sc.ERRNO(_errno.EPERM if errno_ret is None else errno_ret)
    if action == "SCMP_ACT_TRACE":
        return sc.TRACE(_errno.EPERM if errno_ret is None else errno_ret)
    return {"SCMP_ACT_TRAP": sc.TRAP, "SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_LOG": sc.LOG}[action]


def _arg_sets(sc: object, args: list[dict]) -> list[list[object]]:
    """The comparison lists to add as separate rules (see the module docstring)."""
    conds = [sc.Arg(a["index"], OPERATORS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
             for a in args]
    indexes = [a["index"] for a in args]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in conds]
    return [conds]


def compile(seccomp: dict) -> object:
    """A pyseccomp.SyscallFilter for a validated linux.seccomp object (not loaded)."""
    validate(seccomp)
    sc = _import()
    default = _action(sc, seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    filt = sc.SyscallFilter(default)
    try:
        filt.set_attr(_ATTR_CTL_NNP, 0)
        for flag in seccomp.get("flags") or []:
            filt.set_attr(FLAGS[flag], 1)
    except OSError as exc:
        raise FailedPrecondition(f"seccomp flag: not supported by this libseccomp/kernel: {exc.strerror}") from exc
    native = sc.system_arch()
    for arch in seccomp.get("architectures") or []:
        token = ARCHES[arch]
        if token == native:
            continue
        try:
            filt.add_arch(token)
        except OSError as exc:
            if exc.errno != _errno.EEXIST:
                raise FailedPrecondition(f"seccomp architecture {arch}: {exc.strerror}") from exc
    for rule in seccomp.get("syscalls") or []:
        action = _action(sc, rule["action"], rule.get("errnoRet"))
        if action == default:
            continue
        for name in rule["names"]:
            number = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if number == -1:  # __NR_SCMP_ERROR: a name libseccomp does not know
                continue
            for conds in _arg_sets(sc, rule.get("args") or []):
                try:
                    filt.add_rule(action, number, *conds)
                except OSError as exc:
                    raise InvalidArgument(f"seccomp rule for {name!r}: {exc.strerror}") from exc
    return filt


def load(seccomp: dict) -> None:
    """Install the filter on the calling thread (all threads with TSYNC)."""
    if _ready is not None and _ready[0] == seccomp:
        from ketch._sys import bpf

        try:
            bpf.seccomp_set_filter(_ready[1], _ready[2])
        except OSError as exc:
            raise FailedPrecondition(f"load seccomp filter: {exc.strerror}") from exc
        return
    filt = compile(seccomp)
    try:
        filt.load()
    except OSError as exc:
        raise FailedPrecondition(f"load seccomp filter: {exc.strerror}") from exc


def default_profile(capabilities: list[str] | None = None) -> dict:
    """Docker's default profile as linux.seccomp (see ketch.runtime.seccomp_profile)."""
    from ketch.runtime.seccomp_profile import profile

    return profile(capabilities)
