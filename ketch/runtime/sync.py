"""Messages between `ketch-runc` (the parent) and the container's init.

A SOCK_SEQPACKET socketpair keeps message boundaries; each message is one
dict with a "type", encoded with `marshal` (both ends run the same
interpreter, and unlike json it imports nothing: stage 1 starts faster). Child errors travel as data ({"type": "error"}),
and EOF means the child exec'd (the socket is close-on-exec in init) or died.

    parent (ketch-runc create)        stage-1 (exec'd init)          stage-2 = container pid 1
    spawn stage-1 ----------------->  (its interpreter boots)
    read config, mkdir cgroup,
    check config, set limits
    "bootstrap" {config, cgroup ...} ->
                                      into its v1 cgroups ("0" > tasks)
                                      setns(joined), unshare(new but cgroup)
                                      clone3 into the cgroup2 dir --> (pid 1 of a new pid ns)
                                                                          unshare(cgroup)
                       <------------ "pid" {pid}; stage-1 exits
                       <------------------------------------------------- "hooks" (if prestart/createRuntime)
    run hooks in the runtime's namespaces
    "hooks-done" --------------------------------------------------------->
                                                                          mounts, pivot_root, ...
                       <------------------------------------------------- "ready"  |  "error" {msg}
    write state.json, pid file; exit
                                                                          blocks on exec.fifo until `start`

With a new user namespace, or a joined user or cgroup namespace, the
parent moves stage 1 into the cgroup instead (by pid, after "bootstrap")
and then says "cgroup"; stage 1 waits for that word before its first setns/unshare,
makes every new namespace itself (the cgroup one included) and forks init:

                       <------------ "usermap"      (only with a new user ns)
    write uid_map/gid_map
    "mapped" ---------------------->
"""

from __future__ import annotations

import marshal
import os

_MAX = 1 << 20


def send(fd: int, kind: str, **fields) -> None:
    fields["type"] = kind
    os.write(fd, marshal.dumps(fields))


def recv(fd: int, expect: str | None = None) -> dict:
    """Next message; EOF -> {"type": "eof"}; an "error" message is returned as is."""
    data = os.read(fd, _MAX)
    if not data:
        return {"type": "eof"}
    msg = marshal.loads(data)
    if expect and msg.get("type") not in (expect, "error"):
        raise RuntimeError(f"init protocol: expected {expect!r}, got {msg.get('type')!r}")
    return msg


def errmsg(exc: BaseException) -> str:
    """One line for an exception: our OSErrors carry "what: strerror" and the path."""
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) not in text:
            text = f"{text}: {exc.filename}"
        return text
    return str(exc) or type(exc).__name__
