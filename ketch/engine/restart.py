"""Restart policies (--restart) with Docker's back-off, and `system restore`.

Docker's restart manager: the first restart waits 100 ms, each further one
doubles the wait up to one minute; a container that ran for 10 s or more
starts again from 100 ms. A manual stop cancels a pending restart, and
`unless-stopped` stays down after one (also across `system restore`).
The wait happens in the process that ran the cleanup (the monitor's exit
command), or in a detached `ketch container cleanup` when a foreground
`ketch run` did the cleanup itself.
"""

from __future__ import annotations

import sqlite3
import time

from ketch.engine import containers, monitor
from ketch.engine.containers import Container

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def wanted(c: Container) -> bool:
    policy = c.options.restart
    if c.manually_stopped or policy == "no":
        return False
    if policy in ("always", "unless-stopped"):
        return True
    if policy == "on-failure":
        return c.exit_code != 0 and (not c.options.restart_max
                                     or c.restart_count < c.options.restart_max)
    return False


def next_delay(c: Container) -> float:
    ran = (c.finished_at or time.time()) - (c.started_at or 0)
    if ran >= RESET_AFTER or not c.restart_delay:
        return FIRST_DELAY
    return min(c.restart_delay * 2, MAX_DELAY)


def after_exit(conn: sqlite3.Connection, c: Container, *, foreground: bool) -> None:
    from ketch.engine.lifecycle import locked
    # Decide on a fresh read under the container's lock: a `stop` that ran
    # between the cleanup and here has set manually_stopped, and must win.
    with locked(c.id):
        c = containers.get(conn, c.id)
        if c is None or c.status != "exited" or not wanted(c):
            return
        containers.update(conn, c.id, status="restarting", restart_delay=next_delay(c))
    if foreground:
        import subprocess  # only for a restart policy's wait: not on a plain exit
        subprocess.Popen([monitor.ketch_binary(), "container", "cleanup", c.id],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        return
    resume(conn, c.id)


def resume(conn: sqlite3.Connection, cid: str) -> None:
    """Sleep out the back-off of a 'restarting' container, then start it again."""
    from ketch.engine import lifecycle
    c = containers.get(conn, cid)
    if c is None or c.status != "restarting":
        return
    time.sleep(c.restart_delay or FIRST_DELAY)
    with lifecycle.locked(cid):
        c = containers.get(conn, cid)
        if c is None or c.status != "restarting":
            return
        if c.manually_stopped:   # a stop during the back-off: stay down, as exited
            containers.update(conn, cid, status="exited")
            return
        containers.update(conn, cid, restart_count=c.restart_count + 1)
    try:
        lifecycle.start(conn, c, restarting=True)
    except Exception as exc:  # noqa: BLE001 - recorded on the container, like Docker
        containers.update(conn, cid, status="exited", error=str(exc))


def restore(conn: sqlite3.Connection) -> list[str]:
    """After a reboot: mark the dead as exited, bring back always/unless-stopped ones."""
    from ketch.engine import lifecycle
    started = []
    for c in containers.all_containers(conn):   # reconcile() marks the dead as exited
        if c.status == "restarting":
            containers.update(conn, c.id, status="exited")
            c = containers.get(conn, c.id)
        if c.status != "exited":
            continue
        policy = c.options.restart
        if policy == "always" or (policy == "unless-stopped" and not c.manually_stopped):
            lifecycle.cleanup_stale(conn, c)
            lifecycle.start(conn, containers.get(conn, c.id))
            started.append(c.id)
    return started
