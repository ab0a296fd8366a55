"""Starting init: spawn a read-only view of the interpreter, talk over sync.

`ketch-runc` is itself a freshly exec'd, single-threaded process (no thread
is ever started on the create path); it spawns stage 1 (bootstrap.py), a
clean interpreter exec'd from a protected view of its own binary.

That view is never the host's writable file: a container process that
reaches its init's executable through /proc/<pid>/exe (or runs
`#!/proc/self/exe`) and reopens it for writing once init has exec'd away
must not be able to overwrite the host's python (the CVE-2019-5736 class).
Two ways, the first that works:

- a detached, read-only bind mount of the binary (open_tree(2) with
  OPEN_TREE_CLONE, then mount_setattr(2) MOUNT_ATTR_RDONLY, Linux >= 5.12):
  a reopen through it fails with EROFS, and only CAP_SYS_ADMIN over the
  host's mount namespace could make it writable again. It is attached
  nowhere (no mount table shows it, nothing to clean up) and goes away with
  the last process running from it. Cost: two syscalls, ~0.1 ms.
- a sealed memfd copy (F_SEAL_WRITE and friends), as runc did for years:
  copying Debian's 6.6 MB python3 (libpython linked in) costs ~5.4 ms, so
  it is the fallback, for kernels without those syscalls or a ketch-runc
  without CAP_SYS_ADMIN.

bench/runtime_run.py measures both against exec'ing the file.
"""

from __future__ import annotations

import os
import sys

_SYS_OPEN_TREE, _SYS_MOUNT_SETATTR = 428, 442   # the same on every architecture
_OPEN_TREE_CLONE, _AT_EMPTY_PATH = 1, 0x1000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4


def readonly_interpreter(path: str = "/proc/self/exe") -> int:
    """A close-on-exec fd of a detached read-only bind mount of `path` (our interpreter)."""
    from ketch._sys import check, libc
    c = libc()
    fd = check(c.syscall(_SYS_OPEN_TREE, -100, os.fsencode(path), _OPEN_TREE_CLONE | os.O_CLOEXEC),
               f"open_tree {path}")
    try:
        # struct mount_attr {u64 attr_set, attr_clr, propagation, userns_fd}
        flags = _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
        attr = flags.to_bytes(8, sys.byteorder) + bytes(24)
        check(c.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, attr, len(attr)),
              "mount_setattr read-only")
    except BaseException:
        os.close(fd)
        raise
    return fd


def protected_interpreter() -> int:
    """The interpreter to exec stage 1 from: read-only bind mount, else a sealed copy."""
    try:
        return readonly_interpreter()
    except OSError:
        return sealed_interpreter()


def sealed_interpreter() -> int:
    """A close-on-exec memfd holding a sealed copy of our interpreter binary."""
    import fcntl
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    src = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(src).st_size
        mfd = os.memfd_create("ketch-runc-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        off = 0
        while off < size:
            n = os.sendfile(mfd, src, off, size - off)
            if n <= 0:
                break
            off += n
        fcntl.fcntl(mfd, fcntl.F_ADD_SEALS, seals)
        return mfd
    finally:
        os.close(src)


def _code(sock: int) -> str:
    import ketch
    top = os.path.dirname(os.path.dirname(os.path.abspath(ketch.__file__)))
    paths = [top] + [p for p in sys.path if p and p != top]
    # Stage 1 and init live until execve: no cyclic garbage worth a collection.
    return (f"import gc,sys;gc.disable();sys.path[:0]={paths!r};"
            f"from ketch.runtime.bootstrap import main;main({sock})")


def start_init(keep_fds: list[int]) -> tuple[int, int]:
    """Spawn stage 1; returns (pid, our end of the sync socket).

    posix_spawn (a vfork underneath) rather than fork: nothing of ours is
    copied or shared copy-on-write for the few microseconds until the exec.
    The path /proc/self/fd/N makes the kernel open the protected view before
    exec closes it (it is close-on-exec), so the new process runs from it.
    `keep_fds` (console socket, preserved fds) and the child's end of the
    socket are inheritable only for the spawn.
    """
    import _socket
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    parent_fd, child_fd = ours.detach(), theirs.detach()
    exe = protected_interpreter()
    argv = [sys.executable, "-I", "-S", "-c", _code(child_fd)]
    passed = [child_fd, *keep_fds]
    was = [os.get_inheritable(fd) for fd in passed]
    try:
        for fd in passed:
            os.set_inheritable(fd, True)
        pid = os.posix_spawn(f"/proc/self/fd/{exe}", argv, os.environ)
    except BaseException:
        os.close(parent_fd)
        raise
    finally:
        for fd, inheritable in zip(passed, was, strict=True):
            if fd != child_fd and not inheritable:
                os.set_inheritable(fd, False)
        os.close(child_fd)
        os.close(exe)
    return pid, parent_fd


def write_id_maps(pid: int, spec: dict) -> None:
    linux = spec.get("linux") or {}
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in linux.get(key) or [])
        if lines:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)


def reap(pid: int) -> int:
    """waitpid, as a shell exit status (128+signal for a signal)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else \
            128 + os.WTERMSIG(status)


__all__ = ["start_init", "write_id_maps", "reap", "protected_interpreter", "readonly_interpreter",
           "sealed_interpreter"]
