"""Stage 2 of init: pid 1 of the container, one linear sequence up to execve.

`main` is the whole story of a container's first process, in order; each
step says why it sits where it does (runc's standard_init). `exec_main` is
the shorter story of a process joining a running container. Failures before
execve go to the parent as an "error" message (sync.py); a successful execve
closes the close-on-exec sync socket, which the parent reads as EOF.
"""

from __future__ import annotations

import os
import resource
import stat

# Everything init needs is imported here, at load time: after pivot_root the
# host's filesystem (and so this package's source) is gone.
from ketch._sys import mount as _mount
from ketch._sys import proc as _proc
from ketch.runtime import caps, sync
from ketch.runtime import rootfs as fs

_RLIMIT_NAMES = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
                 "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
                 "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
                 "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
                 "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}


def main(boot: dict, sock: int) -> None:
    try:
        if boot.get("exec"):
            exec_main(boot, sock)
        else:
            _init(boot, sock)
    except BaseException as exc:  # noqa: BLE001 - errors travel to the parent as data
        try:
            sync.send(sock, "error", msg=sync.errmsg(exc))
        except OSError:
            # After `create` returned nobody listens: the container's stderr is all we have.
            os.write(2, f"ketch-runc init: {sync.errmsg(exc)}\n".encode())
    os._exit(127)


def _init(boot: dict, sock: int) -> None:
    spec = boot["config"]
    proc = spec["process"]
    linux = spec.get("linux") or {}
    rootfs = boot["rootfs"]
    sysl = fs.RealSys
    new_ns = {n["type"] for n in linux.get("namespaces") or [] if not n.get("path")}
    all_ns = {n["type"] for n in linux.get("namespaces") or []}
    # 1. Our own session, and the sync socket must never reach the container's process.
    #    The capability sets came parsed from `create` (it checked them; parsing reads
    #    our bounding set, the same in both). exec.fifo is opened now, while its path
    #    is reachable.
    os.setsid()
    os.set_inheritable(sock, False)
    fifo = os.open(boot["fifo"], os.O_PATH | os.O_CLOEXEC)
    # Code from the host's filesystem is loaded now, before we may lose the right to
    # read it (user namespace) or the path to it (pivot_root): libseccomp (dlopen()ed
    # by pyseccomp), the hooks runner, the socket module for the console.
    preload(spec)
    # 2. The filesystem tree, while the host's paths (bundle, bind sources) are visible.
    #    Without a mount namespace nothing is mounted: it would land in the host's.
    if "mount" in all_ns:
        fs.prepare_root(sysl, rootfs, linux.get("rootfsPropagation"))
        if "user" in new_ns:
            # Become the namespace's root only now, inside the rootfs: files we create
            # must belong to a mapped uid, and the mapped uid may not be allowed to walk
            # the bundle's path (say, under a 0700 /root). Paths are relative from here.
            os.chdir(rootfs)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            rootfs = "."
        for entry in spec.get("mounts") or []:
            fs.mount_entry(sysl, rootfs, entry, boot["bundle"], "cgroup" in all_ns)
        if _has_dev_tmpfs(spec) or linux.get("devices"):
            fs.create_devices(sysl, rootfs, linux.get("devices") or [], "user" in new_ns)
        if _has_dev_tmpfs(spec):
            fs.dev_symlinks(sysl, rootfs)
    # 3. prestart/createRuntime run in the runtime's namespaces, so the parent runs them;
    #    createContainer runs here, in ours, before pivot_root (runtime-spec).
    #    The parent also tells us the state (our pid as the host sees it) the hooks get.
    hooks = spec.get("hooks") or {}
    state = None
    if any(hooks.get(k) for k in ("prestart", "createRuntime", "createContainer",
                                  "startContainer")):
        sync.send(sock, "hooks")
        reply = sync.recv(sock, "hooks-done")
        if reply["type"] != "hooks-done":
            os._exit(1)
        state = reply["state"]
    if hooks.get("createContainer"):
        from ketch.runtime import hooks as _hooks
        _hooks.run_all(hooks["createContainer"], "createContainer", state)
    # 4. Switch root. After this nothing of the host's tree is reachable by path.
    host_root = None
    if "mount" in all_ns:
        if boot.get("no_pivot"):
            fs.move_root(sysl, rootfs)
        else:
            fs.pivot(sysl, rootfs)
        fs.root_propagation(sysl, linux.get("rootfsPropagation"))
    else:
        # No mount namespace, so no /proc of ours to reach the fifo through:
        # keep the host's root open until step 14, then close it.
        host_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        os.chroot(rootfs)
        os.chdir("/")
    # 5. The terminal: a pty of the container's devpts, master to the console socket.
    if proc.get("terminal"):
        _setup_console(boot["console_fd"], "mount" in all_ns)
    # 6. Names and kernel knobs of our own namespaces.
    if spec.get("hostname") is not None and "uts" in all_ns:
        _proc.sethostname(spec["hostname"])
    if spec.get("domainname") is not None and "uts" in all_ns:
        _proc.setdomainname(spec["domainname"])
    for key, value in (linux.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    # 7. Hide and freeze what must not be touched; the root last, so the steps
    #    above could still create mount points in it.
    if "mount" in all_ns:
        fs.mask_paths(sysl, linux.get("maskedPaths") or [])
        fs.readonly_paths(sysl, linux.get("readonlyPaths") or [])
        if (spec.get("root") or {}).get("readonly"):
            fs.readonly_root(sysl)
    # 8-13 (in _prepare_process): rlimits, oom score, the program, fds, seccomp, user, caps.
    argv0, env = _prepare_process(proc, linux, boot["caps"], boot.get("preserve_fds", 0))
    # 14. Ready: the parent records our state and exits; we block until `start`.
    sync.send(sock, "ready")
    os.close(sock)
    if host_root is None:
        w = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    else:
        w = os.open(boot["fifo"].lstrip("/"), os.O_WRONLY | os.O_CLOEXEC, dir_fd=host_root)
        os.close(host_root)
    os.write(w, b"0")
    os.close(w)
    os.close(fifo)
    # 15. startContainer hooks run in the container, after `start`, before the program.
    if hooks.get("startContainer"):
        from ketch.runtime import hooks as _hooks
        _hooks.run_all(hooks["startContainer"], "startContainer", state)
    _finish(proc, linux, argv0, env)


def exec_main(boot: dict, sock: int) -> None:
    """A process joining a running container (stage 1 already joined its namespaces)."""
    proc = boot["process"]
    linux = boot["config"].get("linux") or {}
    os.set_inheritable(sock, False)
    os.chdir("/")
    if proc.get("terminal"):
        os.setsid()
        _setup_console(boot["console_fd"], False)
    argv0, env = _prepare_process(proc, linux, boot["caps"], boot.get("preserve_fds", 0))
    _finish(proc, linux, argv0, env)


def _prepare_process(proc: dict, linux: dict, sets: dict, preserve: int) -> tuple[str, dict]:
    # 8. rlimits and the OOM score while we still hold CAP_SYS_RESOURCE.
    for rl in proc.get("rlimits") or []:
        resource.setrlimit(_RLIMIT_NAMES[rl["type"]], (rl["soft"], rl["hard"]))
    if proc.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc["oomScoreAdj"]))
    # 9. Find the program now: a missing binary fails `create`, not `start`.
    env = dict(e.split("=", 1) for e in proc.get("env") or [])
    if not env.get("HOME"):
        # As runc: the user's home from the container's /etc/passwd, else "/". Docker
        # sets no HOME and relies on the runtime for it.
        env["HOME"] = _home((proc.get("user") or {}).get("uid", 0))
    argv0 = _lookup(proc["args"][0], env.get("PATH", "/usr/local/sbin:/usr/local/bin:"
                                                      "/usr/sbin:/usr/bin:/sbin:/bin"))
    # 10. No host fd may survive execve (CVE-2024-21626): all but stdio and the preserved.
    _proc.cloexec_from(3 + preserve)
    # 11. Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it before the drop.
    if linux.get("seccomp") and not proc.get("noNewPrivileges"):
        from ketch.runtime import seccomp
        seccomp.load(linux["seccomp"])
    # 12. Capabilities: bounding set while CAP_SETPCAP is ours; keep permitted over setuid.
    caps.drop_bounding(sets["bounding"])
    caps.keep_caps(True)
    user = proc.get("user") or {}
    os.setgroups(user.get("additionalGids") or [])
    os.setresgid(user.get("gid", 0), user.get("gid", 0), user.get("gid", 0))
    os.setresuid(user.get("uid", 0), user.get("uid", 0), user.get("uid", 0))
    caps.keep_caps(False)
    caps.set_sets(sets["effective"], sets["permitted"], sets["inheritable"])
    caps.set_ambient(sets["ambient"])
    # 13. The working directory, inside the new root only (never an inherited fd's).
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise OSError(exc.errno, f"chdir to cwd {cwd!r}: {exc.strerror}") from exc
    # And it must be inside our root (CVE-2024-21626: a cwd through /proc/self/fd/N
    # of a host directory fd leads out of it; init holds none by now, this is the
    # second line). getcwd fails with ENOENT on a directory the root cannot reach
    # (glibc turns the kernel's "(unreachable)" into that). A seccomp filter already
    # loaded may deny getcwd itself (the conformance suite's does): then there is
    # nothing to check with, and the first line stands alone.
    try:
        here = os.getcwd()
    except FileNotFoundError:
        here = ""
    except OSError:
        here = "/"
    if not here.startswith("/"):
        raise PermissionError(1, f"cwd {cwd!r} is outside the container's root")
    if user.get("umask") is not None:
        os.umask(user["umask"])
    else:
        os.umask(0o022)
    return argv0, env


def _finish(proc: dict, linux: dict, argv0: str, env: dict) -> None:
    # 16. no_new_privs, then seccomp as close to execve as possible: fewest
    #     syscalls of ours must pass the container's filter.
    if proc.get("noNewPrivileges"):
        caps.no_new_privs()
        if linux.get("seccomp"):
            from ketch.runtime import seccomp
            seccomp.load(linux["seccomp"])
    # 17. The program. From here the sync socket is closed: EOF tells the parent.
    try:
        os.execve(argv0, proc["args"], env)
    except OSError as exc:
        raise OSError(exc.errno, f'exec: "{proc["args"][0]}": '
                                 f"{(exc.strerror or '').lower()}") from exc


def _home(uid: int) -> str:
    # The image's file: a regular file only (a FIFO would block us), read bounded.
    try:
        fd = os.open("/etc/passwd", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "/"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "/"
        text = os.read(fd, 1 << 20).decode(errors="replace")
    finally:
        os.close(fd)
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid):
            return fields[5] or "/"
    return "/"


def _lookup(name: str, path: str) -> str:
    if "/" in name:
        # A directory passes X_OK for root, but execve fails on it: runc refuses it here.
        if not os.access(name, os.X_OK) or os.path.isdir(name):
            # runc's wording, lower case: Docker maps these phrases to exit codes 127/126.
            err = 2 if not os.path.exists(name) else 13
            raise OSError(err, f'exec: "{name}": stat {name}: {os.strerror(err).lower()}')
        return name
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError(2, f'exec: "{name}": executable file not found in $PATH')


def preload(spec: dict, proc: dict | None = None) -> dict | None:
    """Import what later steps need while the host's filesystem is still visible."""
    linux = spec.get("linux") or {}
    if linux.get("seccomp"):
        from ketch._sys import bpf  # noqa: F401 - seccomp.load() uses it after pivot_root
        from ketch.runtime import seccomp
        seccomp.prepare(linux["seccomp"])
    if spec.get("hooks"):
        import subprocess  # noqa: F401

        from ketch.runtime import hooks  # noqa: F401
    if (proc or spec.get("process") or {}).get("terminal"):
        import socket  # noqa: F401
    if proc is not None:  # exec: parse capabilities while our /proc is the host's
        return caps.parse_spec(proc.get("capabilities"))
    return None


def _has_dev_tmpfs(spec: dict) -> bool:
    return any(m.get("destination", "").rstrip("/") == "/dev" for m in spec.get("mounts") or [])


def _setup_console(console_fd: int | None, mount_console: bool) -> None:
    """A new pty: master to the console socket (SCM_RIGHTS, as runc), slave as stdio."""
    import socket
    master, slave = os.openpty()
    name = os.ttyname(slave)
    if mount_console:
        if not os.path.exists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        _mount.mount(name, "/dev/console", None, _mount.MS_BIND)
    if console_fd is None:
        raise RuntimeError("process.terminal needs a console socket")
    sock = socket.socket(fileno=console_fd)
    socket.send_fds(sock, [name.encode()], [master])
    sock.close()
    os.close(master)
    _proc.set_controlling_tty(slave)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
