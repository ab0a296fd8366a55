"""Stage 1 of a container's init: a freshly exec'd, single-threaded interpreter.

`ketch-runc` spawns this module's `main` from a protected view of the Python
interpreter (see spawn.py: the CVE-2019-5736 defence), so namespace work
never happens in a forked copy of a threaded process. Stage 1 moves itself
into the container's v1 cgroups, joins the namespaces named by path, creates
the new ones, and forks stage 2 straight into the container's cgroup2 dir:
pid 1 of a new pid namespace (unshare(CLONE_NEWPID) only applies to
children). It tells the parent stage 2's pid and exits. (When the parent
moves it into the cgroup instead, see sync.py, it waits for its word.)

For `exec`, stage 1 joins every namespace of the running container instead.
"""

from __future__ import annotations

import errno
import os

from ketch._sys import ns as _ns
from ketch.runtime import init, sync


def main(sock: int) -> None:
    _name_ourselves()
    in_child = lo = join = None   # (call, args) init makes first; what we do after the fork
    try:
        boot = sync.recv(sock, "bootstrap")
        if boot["type"] != "bootstrap":
            os._exit(1)
        join = boot.get("cgroup")
        if join is not None:
            _join_v1(join)   # while the host's paths are ours
        if boot.get("exec"):
            # Load now what stage 2 needs: joining the mount namespace hides our source.
            boot["caps"] = init.preload(boot["config"], boot["process"])
            kept = _join_container(boot["target_pid"], boot.get("join_user", False),
                                   keep_cgroup=join is not None and bool(join.get("v2")))
            if kept is not None:   # joined by the process, once it is in its cgroups
                join["ns"] = kept   # closed with the rest of `join` (_close_join)
                in_child = (_ns.setns, (kept, _ns.CLONE_NEWCGROUP, "cgroup of the container"))
        else:
            new_cgroupns, lo = _enter_namespaces(sock, boot["config"], join)
            if new_cgroupns:   # rooted where init is born (see _fork)
                in_child = (_ns.unshare, (_ns.CLONE_NEWCGROUP,))
        pid = _fork(join)
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent as data
        _report(sock, exc)
        os._exit(1)
    if pid == 0:
        try:
            if in_child is not None:
                in_child[0](*in_child[1])
            # The host's cgroup directory must not reach the container, not even until
            # execve closes it: a cwd of /proc/self/fd/N would lead out of the root.
            _close_join(join)
        except BaseException as exc:  # noqa: BLE001
            _report(sock, exc)
            os._exit(1)
        init.main(boot, sock)  # never returns
        os._exit(1)
    sync.send(sock, "pid", pid=pid)
    if lo is not None:
        # While init works (the parent reaps us before `start`, and reports a failure).
        try:
            lo()
        except BaseException as exc:  # noqa: BLE001
            _report(sock, exc)
            os._exit(1)
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


def _enter_namespaces(sock: int, spec: dict, join: dict | None) -> tuple[bool, object]:
    """Join and make the config's namespaces. Returns whether init must make a new
    cgroup namespace itself (once it is in its cgroups), and, when `lo` of a new
    network namespace is still to be brought up, what does it (we call it after
    the fork, while init works; with hooks, now, before any of them runs).

    `join`: the container's cgroup dirs, when we moved into them ourselves
    ({"v1": [...], "v2": dir or None}; see _fork). Otherwise the parent moves us
    and says "cgroup" when we are in, before we join or make anything.
    """
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
    if join is None:
        # The parent moves us into the container's cgroup (a new user namespace, or a
        # joined user or cgroup one) and says "cgroup" when we are in it: wait before
        # anything is joined or made (a new cgroup namespace is rooted where we stand).
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
    # With `join` init is born in its cgroup2 dir after us: it makes the namespace.
    later = new & {"cgroup"} if join is not None else set()
    flags = 0
    for kind in new - {"user"} - later:
        flags |= _ns.NS_FLAGS[kind]
    if flags:
        _ns.unshare(flags)
    lo = _lo_up() if "network" in new else None
    if lo is not None and spec.get("hooks"):
        lo()
        lo = None
    return bool(later), lo


def _lo_up():
    """What brings `lo` of a new network namespace up, loaded: as runc does, `lo`
    (down in a new namespace) is brought up, which gives it 127.0.0.1 and ::1
    (Docker's `none`).

    Loaded now, called later: once init pivots its root, ours is the
    container's too (pivot_root moves every process of the mount namespace
    still rooted at the old root), so after the fork nothing more can be
    imported from the host's files.
    """
    import _socket  # noqa: F401 - set_up's own import, done while we can

    from ketch._sys import netif
    return lambda: netif.set_up("lo")


def _join_v1(join: dict) -> None:
    """Move ourselves into the container's v1 cgroups, thread by thread: a single
    thread moving itself (`tasks`, "0") takes no global lock, where a pid
    written to cgroup.procs waits for an RCU grace period (7-25 ms here)."""
    for d in join["v1"]:
        fd = os.open(os.path.join(d, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            _write_0(fd, d)
        finally:
            os.close(fd)
    if join.get("v2"):
        # Opened now, while the paths are the host's (a mount namespace may be joined
        # next); the procs file only for _fork's fallback.
        join["fd"] = os.open(join["v2"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        join["procs"] = os.open(os.path.join(join["v2"], "cgroup.procs"),
                                os.O_WRONLY | os.O_CLOEXEC)


def _write_0(fd: int, where: str) -> None:
    try:
        os.write(fd, b"0")
    except OSError as exc:
        raise OSError(exc.errno, f"join cgroup: {exc.strerror}", where) from exc


def _close_join(join: dict | None) -> None:
    for key in ("fd", "procs", "ns"):
        if join is not None and key in join:
            os.close(join.pop(key))


def _fork(join: dict | None) -> int:
    """Fork init. With `join` and a cgroup2 dir, init is born in it (clone3
    CLONE_INTO_CGROUP: no migration, so no lock); on a kernel without that we
    move ourselves into it first (which waits for the lock) and fork."""
    if join is not None and join.get("v2"):
        from ketch._sys import proc
        try:
            return proc.fork_into_cgroup(join["fd"])
        except OSError as exc:
            # Only a kernel or filter without clone3 (or its cgroup flag) falls back;
            # a real failure (pids.max, memory) is reported as itself.
            if exc.errno not in (errno.ENOSYS, errno.E2BIG, errno.EINVAL, errno.EPERM):
                raise
            _write_0(join["procs"], join["v2"])
    return os.fork()


def _in_cgroup(sock: int) -> None:
    if sync.recv(sock, "cgroup")["type"] != "cgroup":
        os._exit(1)


def _join_container(pid: int, join_user: bool, keep_cgroup: bool = False) -> int | None:
    """setns into each namespace of `pid` that differs from ours (user first).

    `keep_cgroup`: the cgroup namespace is not joined but returned, open, for the
    child to join (it is cloned into its cgroup2 dir first, which a process inside
    the container's cgroup namespace may not be allowed to name: nsdelegate).
    """
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
    kept = None
    for name, fd in fds:
        if keep_cgroup and name == "cgroup":
            kept = fd
            continue
        _ns.setns(fd, 0, f"{name} of pid {pid}")
        os.close(fd)
    return kept
