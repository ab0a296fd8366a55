"""Healthchecks (--health-* flags or the image's HEALTHCHECK), Docker's state machine.

A small loop process per container with a healthcheck (containers without
one pay nothing): every Interval it runs the test through `<runtime> exec`,
keeps the last five results, and flips Status between starting, healthy and
unhealthy after Retries consecutive failures (failures during StartPeriod
do not count). It ends when the container stops running.
"""

from __future__ import annotations

import os
import select
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


def loop(cid: str) -> None:
    conn = containers.connect()
    c = containers.get(conn, cid)
    h = config(c) if c else None
    if h is None:
        return
    state = {"Status": "starting", "FailingStreak": 0, "Log": []}
    containers.update(conn, cid, health=state)
    started = c.started_at
    try:
        pidfd = os.pidfd_open(c.pid)
    except OSError:
        return
    while True:
        # Sleep one interval, but wake at once if the container's init exits.
        if select.select([pidfd], [], [], h["Interval"] / 1e9)[0]:
            os.close(pidfd)
            return
        c = containers.get(conn, cid)
        if c is None or c.status != "running" or c.started_at != started:
            return
        t0 = time.time()
        code, out = check_once(c, h)
        state["Log"] = (state["Log"] + [{"Start": rfc3339(t0), "End": rfc3339(time.time()),
                                          "ExitCode": code, "Output": out}])[-5:]
        if code == 0:
            state["Status"], state["FailingStreak"] = "healthy", 0
        elif time.time() - started > h["StartPeriod"] / 1e9:
            state["FailingStreak"] += 1
            if state["FailingStreak"] >= h["Retries"]:
                state["Status"] = "unhealthy"
        containers.update(conn, cid, health=state)
