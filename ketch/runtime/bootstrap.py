"""Stage 1 of a container's init: a freshly exec'd, single-threaded interpreter.

`ketch-runc` forks and execs this module's `main` from a sealed in-memory
copy of the Python interpreter (see spawn.py: the CVE-2019-5736 defence), so
namespace work never happens in a forked copy of a threaded process. Stage 1
joins the namespaces named by path, creates the new ones, and forks stage 2,
which is pid 1 of a new pid namespace (unshare(CLONE_NEWPID) only applies to
children). It tells the parent stage 2's pid and exits.

For `exec`, stage 1 joins every namespace of the running container instead.
"""

from __future__ import annotations

import os

from ketch._sys import ns as _ns
from ketch.runtime import init, sync


def main(sock: int) -> None:
    _name_ourselves()
    try:
        boot = sync.recv(sock, "bootstrap")
        if boot["type"] != "bootstrap":
            os._exit(1)
        if boot.get("exec"):
            # Load now what stage 2 needs: joining the mount namespace hides our source.
            boot["caps"] = init.preload(boot["config"], boot["process"])
            _join_container(boot["target_pid"], boot.get("join_user", False))
        else:
            _enter_namespaces(sock, boot["config"])
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent as data
        _report(sock, exc)
        os._exit(1)
    if pid == 0:
        init.main(boot, sock)  # never returns
        os._exit(1)
    sync.send(sock, "pid", pid=pid)
    os._exit(0)


def _name_ourselves() -> None:
    """`ps` shows "ketch-runc-init", not the number of the fd we were exec'd through."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("ketch-runc-init")
    except OSError:
        pass  # a name is a courtesy


def _report(sock: int, exc: BaseException) -> None:
    try:
        sync.send(sock, "error", msg=sync.errmsg(exc))
    except OSError:
        pass


def _enter_namespaces(sock: int, spec: dict) -> None:
    wanted = [(n["type"], n.get("path") or None)
              for n in (spec.get("linux") or {}).get("namespaces") or []]
    # Open every path first: joining the mount namespace changes what paths mean.
    joins = []
    for kind, path in wanted:
        if path:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise OSError(exc.errno, f"open namespace {kind}", path) from exc
            joins.append((kind, path, fd))
    new = {kind for kind, path in wanted if not path}
    # The parent moves us into the container's cgroup while we boot and unshare, and
    # says "cgroup" when we are in it (on v1 the move waits for an RCU grace period,
    # 7-15 ms here). A new cgroup namespace is rooted where we stand when it is made,
    # and a user namespace changes who owns what we make: those wait for the word.
    waited = "user" in new or any(kind in ("user", "cgroup") for kind, _p, _f in joins)
    if waited:
        _in_cgroup(sock)
    # The user namespace first (runc's order): the others may be owned by it.
    joins.sort(key=lambda j: j[0] != "user")
    for kind, path, fd in joins:
        _ns.setns(fd, _ns.NS_FLAGS[kind], f"{kind} {path}")
        os.close(fd)
    if "user" in new:
        # Alone first: the parent maps our ids before anything is created in it.
        _ns.unshare(_ns.CLONE_NEWUSER)
        sync.send(sock, "usermap", pid=os.getpid())
        if sync.recv(sock, "mapped")["type"] != "mapped":
            os._exit(1)
        # No setresuid(0) yet: our host uid still owns the bundle's path (which may sit
        # under a 0700 /root); init switches to the process's user at the very end.
    later = set() if waited else new & {"cgroup"}
    flags = 0
    for kind in new - {"user"} - later:
        flags |= _ns.NS_FLAGS[kind]
    if flags:
        _ns.unshare(flags)
    if "network" in new:
        # As runc does: a new network namespace has `lo`, down; it is brought up
        # (the kernel then gives it 127.0.0.1 and ::1), which is Docker's `none`.
        from ketch._sys import netif
        netif.set_up("lo")
    if not waited:
        _in_cgroup(sock)
    if later:
        _ns.unshare(_ns.CLONE_NEWCGROUP)


def _in_cgroup(sock: int) -> None:
    if sync.recv(sock, "cgroup")["type"] != "cgroup":
        os._exit(1)


def _join_container(pid: int, join_user: bool) -> None:
    """setns into each namespace of `pid` that differs from ours (user first)."""
    order = ["user", "ipc", "uts", "net", "pid", "cgroup", "mnt", "time"]
    if not join_user:
        order.remove("user")
    fds = []
    for name in order:
        theirs = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            fds.append((name, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue
    for name, fd in fds:
        _ns.setns(fd, 0, f"{name} of pid {pid}")
        os.close(fd)
