"""Starting init: spawn a sealed copy of the interpreter, talk over sync.

`ketch-runc` is itself a freshly exec'd, single-threaded process (no thread
is ever started on the create path); it spawns stage 1 (bootstrap.py), a
clean interpreter exec'd from the sealed copy.

The interpreter it execs is a sealed memfd copy of /proc/self/exe, never the
host file: a container process that reaches its init's executable through
/proc/<pid>/exe (or runs `#!/proc/self/exe`) gets the read-only memfd and
cannot overwrite the host's python (the CVE-2019-5736 class). The copy
costs one sendfile of the ~17 KiB launcher (libpython is a shared library
the container cannot reopen for writing without CAP_SYS_ADMIN in the host's
user namespace); bench/runtime_run.py measures the exec.
"""

from __future__ import annotations

import fcntl
import os
import sys

from ketch.runtime import sync

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def sealed_interpreter() -> int:
    """A close-on-exec memfd holding a sealed copy of our interpreter binary."""
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
        fcntl.fcntl(mfd, fcntl.F_ADD_SEALS, _SEALS)
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
    The path /proc/self/fd/N makes the kernel open the memfd before exec
    closes it (it is close-on-exec), so the new process runs the sealed copy.
    `keep_fds` (console socket, preserved fds) and the child's end of the
    socket are inheritable only for the spawn.
    """
    import _socket
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    parent_fd, child_fd = ours.detach(), theirs.detach()
    exe = sealed_interpreter()
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


__all__ = ["start_init", "write_id_maps", "reap", "sealed_interpreter", "sync"]
