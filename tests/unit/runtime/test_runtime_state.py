"""Container state: derived status, atomic save, transition guards; no root needed."""

from __future__ import annotations

import os

import pytest

from ketch.errors import Conflict, InvalidArgument, NotFound
from ketch.runtime import state as st
from ketch.runtime import sync


def make(tmp_path, pid: int, start: int | None) -> st.Container:
    c = st.Container(str(tmp_path), "c1", {"id": "c1", "bundle": "/b", "pid": pid,
                                           "pid_start": start, "config": {"annotations": {}}})
    os.mkdir(c.dir)
    c.save()
    return c


def test_status_is_derived_from_the_process_and_the_fifo(tmp_path):
    me = os.getpid()
    c = make(tmp_path, me, st.proc_start_time(me))
    os.mkfifo(c.fifo)
    assert c.status() == st.CREATED
    os.unlink(c.fifo)
    assert c.status() == st.RUNNING
    loaded = st.Container.load(str(tmp_path), "c1")
    assert loaded.oci_state()["pid"] == me
    assert sorted(os.listdir(c.dir)) == ["state.json"]  # no temp file left by save()


def test_a_reused_pid_reads_as_stopped(tmp_path):
    me = os.getpid()
    c = make(tmp_path, me, st.proc_start_time(me) + 1)  # same pid, other start time
    assert c.status() == st.STOPPED
    assert c.oci_state()["pid"] == 0
    with pytest.raises(Conflict, match="it is stopped"):
        c.need(st.CREATED, st.RUNNING, verb="kill")


def test_load_errors_and_ids(tmp_path):
    with pytest.raises(NotFound, match="'nope' does not exist"):
        st.Container.load(str(tmp_path), "nope")
    for bad in ("", "..", "a/b", "x" * 2000):
        with pytest.raises(InvalidArgument):
            st.check_id(bad)
    st.check_id("0f3e_ab-c.d+1")


def test_list_ids_and_remove(tmp_path):
    c = make(tmp_path, 1, None)
    os.mkdir(tmp_path / "half-made")  # no state.json: not listed
    assert st.list_ids(str(tmp_path)) == ["c1"]
    c.remove()
    assert st.list_ids(str(tmp_path)) == []


def test_sync_messages_round_trip_and_eof():
    r, w = os.pipe()
    sync.send(w, "pid", pid=42)
    assert sync.recv(r, "pid") == {"type": "pid", "pid": 42}
    os.close(w)
    assert sync.recv(r) == {"type": "eof"}
    os.close(r)


def test_errmsg_names_what_and_where():
    exc = OSError(2, "mount proc on /x/proc: No such file or directory", "/x/proc")
    assert sync.errmsg(exc) == "mount proc on /x/proc: No such file or directory"
    assert sync.errmsg(OSError(13, "open", "/etc/shadow")) == "open: /etc/shadow"
    assert sync.errmsg(ValueError()) == "ValueError"
