"""`exec`: run one more process inside a created or running container.

Stage 1 joins every namespace of the container's init (user first), is put
in the container's cgroup, and forks; stage 2 applies the process's user,
capabilities, rlimits, no_new_privs and the container's seccomp filter, then
execs. EOF on the sync socket means the exec succeeded.
"""

from __future__ import annotations

import copy
import os

from ketch.errors import InvalidArgument, KetchError
from ketch.oci import runtime_spec
from ketch.runtime import fastjson, spawn, sync
from ketch.runtime.state import CREATED, RUNNING, Container


def build_process(c: Container, opts: dict, args: list[str]) -> dict:
    if opts.get("process"):
        try:
            with open(opts["process"], "rb") as f:
                proc = fastjson.loads(f.read())  # not json: its import (re) costs an exec ~20 ms
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"--process {opts['process']}: {exc}") from None
        runtime_spec.check_process(proc, "process")
        return proc
    if not args:
        raise InvalidArgument("exec: a command is required (or --process FILE)")
    proc = copy.deepcopy(c.config.get("process") or {})
    proc["args"] = args
    proc["terminal"] = bool(opts.get("tty"))
    env = dict(e.split("=", 1) for e in proc.get("env") or [])
    for e in opts.get("env") or []:
        if "=" not in e:
            raise InvalidArgument(f"--env: must be KEY=value, not {e!r}")
        k, v = e.split("=", 1)
        env[k] = v
    proc["env"] = [f"{k}={v}" for k, v in env.items()]
    if opts.get("cwd"):
        proc["cwd"] = opts["cwd"]
    user = proc.setdefault("user", {})
    if opts.get("user"):
        uid, _, gid = opts["user"].partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise InvalidArgument(f"--user: must be uid[:gid] numbers, not {opts['user']!r}")
        user["uid"] = int(uid)
        user["gid"] = int(gid) if gid else 0
    if opts.get("gids"):
        user["additionalGids"] = [int(g) for g in opts["gids"]]
    if opts.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    for cap in opts.get("cap") or []:
        for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            proc.setdefault("capabilities", {}).setdefault(key, []).append(cap)
    runtime_spec.check_process(proc, "process")
    return proc


def run(c: Container, opts: dict, args: list[str]) -> int:
    proc = build_process(c, opts, args)
    c.need(CREATED, RUNNING, verb="exec in")
    from ketch.runtime import caps, log
    caps.parse_spec_warning(proc.get("capabilities"), log.warn)
    console_fd = ours = None
    if proc.get("terminal"):
        if opts.get("console_socket"):
            from ketch.runtime.create import _connect
            console_fd = _connect(opts["console_socket"])
        elif opts.get("detach"):
            raise InvalidArgument("exec --tty --detach needs --console-socket")
        else:  # foreground: we take the master and relay it, as `run` does
            import _socket
            a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            ours, console_fd = a.detach(), b.detach()
    preserve = int(opts.get("preserve_fds") or 0)
    keep = list(range(3, 3 + preserve)) + ([console_fd] if console_fd is not None else [])
    from ketch._sys import proc as _proc
    _proc.prctl(_proc.PR_SET_CHILD_SUBREAPER, 1)
    stage1, sock = spawn.start_init(keep)
    try:
        ns = {n["type"] for n in (c.config.get("linux") or {}).get("namespaces") or []}
        join = None
        if c.data.get("cgroup"):
            if "user" in ns:   # its root may not write the host's cgroup files: we move it
                c.cgroup().add(stage1)
            else:   # it moves itself, and clones the process in (bootstrap.py): no lock
                join = c.cgroup().join_dirs()
        sync.send(sock, "bootstrap", exec=True, target_pid=c.pid, join_user="user" in ns,
                  process=proc, config=c.config, console_fd=console_fd, preserve_fds=preserve,
                  cgroup=join)
        msg = sync.recv(sock, "pid")
        if msg["type"] != "pid":
            raise KetchError("exec failed: unable to start container process: "
                             f"{msg.get('msg', 'init exited')}", exit_code=1)
        pid = msg["pid"]
        spawn.reap(stage1)
        msg = sync.recv(sock)
        if msg["type"] == "error":
            spawn.reap(pid)
            # runc's words: the message itself starts `exec: "<cmd>": ...` already.
            raise KetchError(f"exec failed: unable to start container process: {msg['msg']}",
                             exit_code=1)
    except BaseException:
        try:
            os.kill(stage1, 9)
        except ProcessLookupError:
            pass
        spawn.reap(stage1)
        raise
    finally:
        os.close(sock)
        if console_fd is not None:
            os.close(console_fd)
    if opts.get("pid_file"):
        from ketch.runtime.state import write_atomic
        write_atomic(os.path.abspath(opts["pid_file"]), str(pid))
    if opts.get("detach"):
        return 0
    if ours is not None:
        from ketch.runtime import tty
        master = tty.receive_master(ours)
        os.close(ours)
        tty.relay(master, lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid))
        os.close(master)
    from ketch.runtime.run import wait_for
    return wait_for(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True
