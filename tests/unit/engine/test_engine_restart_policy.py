"""Restart policies and Docker's back-off (engine/restart.py), without running anything."""

from __future__ import annotations

import time

from ketch.engine import restart
from ketch.engine.containers import Container
from ketch.engine.options import CreateOptions


def _c(policy="no", max_=0, code=0, count=0, delay=0.0, ran=1.0, stopped=False) -> Container:
    now = time.time()
    return Container(id="x" * 64, name="n", image="i", image_id="sha256:i", created=now,
                     status="exited", options=CreateOptions(restart=policy, restart_max=max_),
                     image_config={}, rootfs=[], pid=0, monitor_pid=0, monitor_start="",
                     exit_code=code, oom_killed=False, error="", started_at=now - ran,
                     finished_at=now, restart_count=count, restart_delay=delay,
                     manually_stopped=stopped, health={})


def test_which_policies_restart():
    assert not restart.wanted(_c("no", code=1))
    assert restart.wanted(_c("always", code=0))
    assert restart.wanted(_c("unless-stopped", code=0))
    assert not restart.wanted(_c("always", stopped=True))
    assert not restart.wanted(_c("on-failure", code=0))
    assert restart.wanted(_c("on-failure", code=2))
    assert restart.wanted(_c("on-failure", 3, code=2, count=2))
    assert not restart.wanted(_c("on-failure", 3, code=2, count=3))


def test_backoff_doubles_to_a_minute_and_resets_after_ten_seconds_up():
    assert restart.next_delay(_c(delay=0)) == 0.1
    assert restart.next_delay(_c(delay=0.1)) == 0.2
    assert restart.next_delay(_c(delay=40)) == 60
    assert restart.next_delay(_c(delay=60)) == 60
    assert restart.next_delay(_c(delay=60, ran=11)) == 0.1


def _stored(tmp_path, monkeypatch, policy="always"):
    """A container row in a throwaway database, as the exit cleanup leaves it."""
    from ketch.engine import containers
    monkeypatch.setenv("KETCH_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("KETCH_RUNROOT", str(tmp_path / "run"))
    conn = containers.connect()
    c = _c(policy)
    containers.insert(conn, c.id, "n", "i", "sha256:i", c.options, {})
    containers.update(conn, c.id, status="exited", exit_code=0)
    return conn, c


def test_a_stop_between_cleanup_and_policy_wins(tmp_path, monkeypatch):
    # The exit cleanup read the row before `stop` marked it: its copy says
    # "not stopped", the database says stopped. The policy must follow the database.
    from ketch.engine import containers
    conn, stale = _stored(tmp_path, monkeypatch)
    containers.update(conn, stale.id, manually_stopped=1)
    restart.after_exit(conn, stale, foreground=False)
    assert containers.get(conn, stale.id).status == "exited"


def test_a_stop_during_the_backoff_leaves_it_exited_not_restarting(tmp_path, monkeypatch):
    from ketch.engine import containers
    conn, c = _stored(tmp_path, monkeypatch)
    containers.update(conn, c.id, status="restarting", restart_delay=0.01, manually_stopped=1)
    restart.resume(conn, c.id)
    got = containers.get(conn, c.id)
    assert got.status == "exited" and got.restart_count == 0
