"""Healthchecks (--health-* flags or the image's HEALTHCHECK), Docker's state machine.

One checker process per root serves every container with a healthcheck
(containers without one pay nothing, and N healthchecked containers pay one
interpreter, not N): every Interval it runs a container's test through
`<runtime> exec`, keeps the last five results, and flips Status between
starting, healthy and unhealthy after Retries consecutive failures (failures
during StartPeriod do not count). An flock on <runroot>/health.lock makes
it a singleton; it ends when no running container has a healthcheck. Before
ending it drops the lock and looks once more, so a container started in
that instant (whose own checker found the lock taken) is not left unchecked.
"""

from __future__ import annotations

import os
import subprocess
import time

from ketch.engine import containers, ocicli, spec
from ketch.engine.views import rfc3339

DEFAULTS = {"Interval": 30e9, "Timeout": 30e9, "StartPeriod": 0, "Retries": 3}


def config(c: containers.Container) -> dict | None:
    img = spec.image_section(c.image_config).get("Healthcheck") or {}
    h = {**DEFAULTS, **{k: v for k, v in img.items() if v},
         **{k: v for k, v in (c.options.health or {}).items() if v is not None}}
    test = h.get("Test") or []
    if c.options.no_healthcheck or not test or test[0] == "NONE":
        return None
    return h


def _argv(test: list[str]) -> list[str]:
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return list(test[1:] if test[0] == "CMD" else test)


def check_once(c: containers.Container, h: dict) -> tuple[int, str]:
    import json
    import tempfile

    from ketch.engine.execs import process_spec
    proc = process_spec(c, _argv(h["Test"]), env=[], user="", workdir="", tty=False,
                        privileged=False)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(proc, f)
        f.flush()
        try:
            r = subprocess.run([*ocicli.base_args(c.options.runtime), "exec", "--process",
                                f.name, c.id], capture_output=True,
                               timeout=h["Timeout"] / 1e9)
        except subprocess.TimeoutExpired:
            return -1, "Health check exceeded timeout"
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")[-4096:]


def _due(conn, tracked: dict) -> None:
    """Sync `tracked` (cid -> schedule) with the running containers that have a healthcheck."""
    live = {}
    for c in containers.all_containers(conn):
        h = config(c) if c.status == "running" else None
        if h is not None:
            live[c.id] = (c, h)
    for cid in list(tracked):
        if cid not in live or tracked[cid]["started"] != live[cid][0].started_at:
            del tracked[cid]
    for cid, (c, h) in live.items():
        if cid not in tracked:
            state = {"Status": "starting", "FailingStreak": 0, "Log": []}
            containers.update(conn, cid, health=state)
            tracked[cid] = {"h": h, "started": c.started_at, "state": state,
                            "next": time.time() + h["Interval"] / 1e9}


def _check(conn, cid: str, entry: dict) -> None:
    c = containers.get(conn, cid)
    if c is None or c.status != "running":
        return
    h, state = entry["h"], entry["state"]
    t0 = time.time()
    code, out = check_once(c, h)
    state["Log"] = (state["Log"] + [{"Start": rfc3339(t0), "End": rfc3339(time.time()),
                                      "ExitCode": code, "Output": out}])[-5:]
    if code == 0:
        state["Status"], state["FailingStreak"] = "healthy", 0
    elif time.time() - entry["started"] > h["StartPeriod"] / 1e9:
        state["FailingStreak"] += 1
        if state["FailingStreak"] >= h["Retries"]:
            state["Status"] = "unhealthy"
    containers.update(conn, cid, health=state)
    entry["next"] = time.time() + h["Interval"] / 1e9


def _lock() -> int | None:
    import fcntl

    from ketch import paths
    paths.runroot().mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.runroot() / "health.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def loop() -> None:
    """The root's checker; returns at once if another one already runs."""
    fd = _lock()
    if fd is None:
        return
    conn = containers.connect()
    tracked: dict = {}
    while True:
        _due(conn, tracked)
        if not tracked:
            os.close(fd)                       # release, then look once more
            _due(conn, tracked)
            if not tracked or (fd := _lock()) is None:
                return
            continue
        now = time.time()
        for cid, entry in list(tracked.items()):
            if entry["next"] <= now:
                _check(conn, cid, entry)
        wake = min(e["next"] for e in tracked.values())
        # At least once a second: new containers join, stopped ones leave.
        time.sleep(max(0.0, min(wake - time.time(), 1.0)))
