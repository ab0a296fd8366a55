"""Compiled seccomp filters, cached as raw BPF under the run root.

Most containers carry the same profile (the default one), and building it
with libseccomp costs an import of pyseccomp (and `typing`) plus ~10 ms of
rule building on every start. The program libseccomp produces depends only
on the spec, the architecture and the library, so it is compiled once,
exported as a sock_filter array and kept in <runroot>/seccomp/<sha256>.bpf
(a root-only directory on tmpfs: gone at reboot, with any library upgrade
that came with it). A later start loads those bytes with seccomp(2) and
never touches libseccomp.

Any trouble with the cache (unreadable in a user namespace, read-only run
root, a truncated file) falls back to compiling: the cache can only make a
start faster, never different.
"""

from __future__ import annotations

import os

# runtime-spec flag -> SECCOMP_FILTER_FLAG_* bit passed to seccomp(2).
KERNEL_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}


def flags(seccomp: dict) -> int:
    out = 0
    for name in seccomp.get("flags") or []:
        out |= KERNEL_FLAGS[name]
    return out


def _library_id() -> str:
    """Which libseccomp would compile (its versioned file name), without a linker search."""
    machine = os.uname().machine
    for d in (f"/usr/lib/{machine}-linux-gnu", f"/lib/{machine}-linux-gnu", "/usr/lib64", "/usr/lib"):
        path = os.path.join(d, "libseccomp.so.2")
        if os.path.exists(path):
            return os.path.realpath(path)
    return "unknown"


def key(seccomp: dict) -> str:
    """sha256 of the spec as parsed (repr: no json import; key order only costs a miss)."""
    try:
        from _sha256 import sha256  # the builtin module: hashlib would load OpenSSL (~5 ms)
    except ImportError:
        from hashlib import sha256
    return sha256(repr((seccomp, os.uname().machine, _library_id())).encode()).hexdigest()


def directory() -> str:
    # ketch.paths.runroot(), restated without importing pathlib on the start path.
    return os.path.join(os.environ.get("KETCH_RUNROOT") or "/run/ketch", "seccomp")


def _trusted(st: os.stat_result) -> bool:
    """Ours and writable by nobody else: a planted program would weaken every container."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def lookup(k: str) -> bytes | None:
    d = directory()
    try:
        if not _trusted(os.stat(d)):
            return None
        with open(os.path.join(d, f"{k}.bpf"), "rb") as f:
            if not _trusted(os.fstat(f.fileno())):
                return None
            prog = f.read()
    except OSError:
        return None
    # A sock_filter is 8 bytes; the kernel takes at most 4096 of them.
    if not prog or len(prog) % 8 or len(prog) > 4096 * 8:
        return None
    return prog


def store(k: str, prog: bytes) -> None:
    d = directory()
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = os.path.join(d, f".{k}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, prog)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(d, f"{k}.bpf"))  # atomic: readers see all or nothing
    except OSError:
        pass  # no cache this time; compiling again next time is correct, only slower


def export(filt: object) -> bytes:
    """The sock_filter array of a pyseccomp filter (via a memfd: no size limit, no disk)."""
    fd = os.memfd_create("ketch-seccomp", os.MFD_CLOEXEC)
    try:
        class _File:
            def fileno(self) -> int:
                return fd

        filt.export_bpf(_File())  # type: ignore[attr-defined]
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
