"""The lifecycle verbs after `create`: start, run, kill, delete, pause, resume, ps, events.

Each verb loads the state, checks the transition with `Container.need`, and
acts. `run` is create + start + wait in one process, which stays the
container's subreaper so it can report the exit status.
"""

from __future__ import annotations

import os
import select
import time

from ketch.errors import Conflict, InvalidArgument, KetchError
from ketch.runtime.state import CREATED, PAUSED, RUNNING, STOPPED, Container

SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
           "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
           "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
           "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26,
           "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31}


def parse_signal(text: str) -> int:
    t = text.upper().removeprefix("SIG")
    if t.isdigit() and 0 < int(t) < 65:
        return int(t)
    if t in SIGNALS:
        return SIGNALS[t]
    if t.startswith("RTMIN") or t.startswith("RTMAX"):
        base, off = (34, 1) if t.startswith("RTMIN") else (64, -1)
        rest = t[5:].lstrip("+-")
        n = base + off * int(rest) if rest.isdigit() else base
        if 34 <= n <= 64:
            return n
    raise InvalidArgument(f"invalid signal {text!r}")


def start(c: Container) -> None:
    """Release init from exec.fifo; poststart hooks run before we return."""
    c.need(CREATED, verb="start")
    fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        while True:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                data = os.read(fd, 1)
                if data:
                    break
            if not c.alive():
                raise KetchError(f"cannot start container {c.id!r}: its init exited",
                                 exit_code=1)
    finally:
        os.close(fd)
    os.unlink(c.fifo)
    hooks = (c.config.get("hooks") or {}).get("poststart")
    if hooks:
        from ketch.runtime import hooks as _hooks
        _hooks.run_all(hooks, "poststart", c.oci_state(RUNNING))


def _own_cgroup(c: Container):
    """The container's cgroup manager, if the container made its cgroup itself.

    Signalling "everything in the cgroup" is only safe then: a config may name
    an existing cgroup (linux.cgroupsPath) that holds processes of others.
    """
    if not c.data.get("cgroup"):
        return None
    cg = c.cgroup()
    return cg if any(d in cg.created for d in cg.paths.values()) else None


def kill(c: Container, sig: int, all_procs: bool = False) -> None:
    c.need(CREATED, RUNNING, PAUSED, verb="kill")
    cg = _own_cgroup(c) if all_procs else None
    if cg is not None:
        for pid in cg.pids():
            _signal(pid, sig)
        if sig == 9 and c.status() == PAUSED:
            cg.thaw()
        return
    _signal(c.pid, sig)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def delete(c: Container, force: bool = False) -> None:
    """Remove a stopped container (with force: kill it first); poststop hooks last."""
    status = c.status()
    if status != STOPPED:
        if not force:
            raise Conflict(f"cannot delete container {c.id!r}: it is {status} (use --force)")
        _kill_all(c)
    if c.data.get("cgroup"):
        cg = c.cgroup()
        if _own_cgroup(c) is not None and cg.pids():
            _kill_all(c)
        cg.destroy()
    c.remove()
    hooks = (c.config.get("hooks") or {}).get("poststop")
    if hooks:
        from ketch.runtime import hooks as _hooks
        _hooks.run_all(hooks, "poststop", c.oci_state(STOPPED))


def _kill_all(c: Container) -> None:
    """SIGKILL init and everything in its own cgroup; wait (bounded) until they are gone."""
    cg = _own_cgroup(c)
    if c.alive():
        _signal(c.pid, 9)
    if cg is not None:
        for pid in cg.pids():
            _signal(pid, 9)
        if cg.frozen():
            cg.thaw()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not c.alive() and (cg is None or not cg.pids()):
            return
        _reap_any()
        time.sleep(0.005)


def _reap_any() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def pause(c: Container) -> None:
    c.need(RUNNING, CREATED, verb="pause")
    cg = _own_cgroup(c)
    if cg is None:
        raise Conflict(f"cannot pause container {c.id!r}: its cgroup is shared with others")
    cg.freeze()


def resume(c: Container) -> None:
    c.need(PAUSED, verb="resume")
    c.cgroup().thaw()


def pids(c: Container) -> list[int]:
    if c.data.get("cgroup"):
        return sorted(c.cgroup().pids())
    return [c.pid] if c.alive() else []


def stats(c: Container) -> dict:
    c.need(CREATED, RUNNING, PAUSED, verb="get stats of")
    return {"type": "stats", "id": c.id, "data": c.cgroup().stats()}


def update(c: Container, resources: dict) -> None:
    """Apply new linux.resources and remember them for the next `state`/`events`."""
    c.cgroup().set(resources)
    linux = c.config.setdefault("linux", {})
    merged = linux.setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    c.save()
