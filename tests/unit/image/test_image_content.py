"""The content store: verify-on-commit, resumable ingest, one writer per ref."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

from ketch.content.store import ContentStore
from ketch.errors import DataError, NotFound
from ketch.oci import digest


def test_put_read_walk_delete(tmp_path):
    cs = ContentStore(tmp_path)
    d = cs.put(b"hello")
    assert d == digest.of_bytes(b"hello")
    assert cs.exists(d) and cs.read(d) == b"hello" and cs.size(d) == 5
    assert list(cs.walk()) == [(d, 5)]
    assert cs.verify(d) is None
    assert cs.put(b"hello") == d
    assert cs.delete(d) and not cs.exists(d)
    with pytest.raises(NotFound):
        cs.read(d)
    assert cs.ingests() == []


def test_digest_mismatch_commits_nothing(tmp_path):
    cs = ContentStore(tmp_path)
    want = digest.of_bytes(b"good")
    with pytest.raises(DataError, match="digest mismatch"):
        cs.put(b"evil", expected=want)
    assert not cs.exists(want) and list(cs.walk()) == [] and cs.ingests() == []


def test_truncated_blob_is_refused(tmp_path):
    cs = ContentStore(tmp_path)
    data = os.urandom(1000)
    want = digest.of_bytes(data)
    with cs.writer("ref", want, len(data)) as w:
        w.write(data[:600])
        with pytest.raises(DataError, match="size 600, expected 1000"):
            w.commit()
    assert not cs.exists(want)


def test_oversize_write_is_refused(tmp_path):
    cs = ContentStore(tmp_path)
    with cs.writer("ref", None, 3) as w, pytest.raises(DataError, match="more than"):
        w.write(b"abcd")


def test_resume_after_interrupted_write(tmp_path):
    cs = ContentStore(tmp_path)
    data = os.urandom(300_000)
    want = digest.of_bytes(data)
    with cs.writer("layer-1", want, len(data)) as w:
        w.write(data[:123_456])
    assert not cs.exists(want)
    assert cs.ingests() == [("layer-1", 123_456)]
    with cs.writer("layer-1", want, len(data)) as w:
        assert w.offset == 123_456
        w.write(data[w.offset:])
        assert w.commit() == want
    assert cs.read(want) == data and cs.ingests() == []


def _killed_writer(root, data, ready):
    cs = ContentStore(root)
    w = cs.writer("victim", digest.of_bytes(data), len(data))
    w.write(data[:1000])
    w._file.flush()
    ready.set()
    time.sleep(60)


def test_killed_writer_leaves_nothing_committed(tmp_path):
    data = os.urandom(5000)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_killed_writer, args=(tmp_path, data, ready))
    p.start()
    assert ready.wait(20)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    cs = ContentStore(tmp_path)
    assert list(cs.walk()) == []
    assert cs.ingests() == [("victim", 1000)]
    with cs.writer("victim", digest.of_bytes(data), len(data)) as w:
        assert w.offset == 1000   # the lock died with the writer; we resume
        w.write(data[1000:])
        w.commit()
    assert cs.read(digest.of_bytes(data)) == data


def test_concurrent_writers_write_once(tmp_path):
    data = os.urandom(200_000)
    want = digest.of_bytes(data)
    wrote, errors = [], []
    barrier = threading.Barrier(4)

    def pull():
        cs = ContentStore(tmp_path)
        barrier.wait()
        try:
            with cs.writer("pull-" + want, want, len(data)) as w:
                if w.exists:
                    w.commit()
                    return
                for i in range(0, len(data), 50_000):
                    w.write(data[i:i + 50_000])
                    time.sleep(0.01)
                w.commit()
                wrote.append(1)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrote == [1]
    cs = ContentStore(tmp_path)
    assert cs.read(want) == data and cs.ingests() == []


def test_writer_survives_ingest_removed_during_mkdir(tmp_path, monkeypatch):
    """A waiter's mkdir can see the ingest directory exist (EEXIST) and then find it
    gone, removed by the writer that just committed: it must try again, not fail."""
    cs = ContentStore(tmp_path)
    cs.ingest.mkdir(parents=True)
    real_mkdir, raced = os.mkdir, []

    def racing_mkdir(path, mode=0o777, *a, **kw):
        if str(path).startswith(str(cs.ingest) + "/") and not raced:
            raced.append(path)              # the directory "existed" and is gone again
            raise FileExistsError(17, "File exists", str(path))
        return real_mkdir(path, mode, *a, **kw)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    data = b"payload"
    with cs.writer("race", digest.of_bytes(data), len(data)) as w:
        w.write(data)
        w.commit()
    assert raced and cs.read(digest.of_bytes(data)) == data


def test_verify_finds_corruption(tmp_path):
    cs = ContentStore(tmp_path)
    d = cs.put(b"payload")
    path = cs.path(d)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    assert "hashes to" in cs.verify(d)
    cs.delete(d)
    assert cs.verify(d) == "missing"


def test_stale_ingests_expire_but_live_ones_stay(tmp_path):
    cs = ContentStore(tmp_path)
    with cs.writer("old", None) as w:
        w.write(b"x" * 100)
    old = cs.ingest / next(iter(os.listdir(cs.ingest)))
    os.utime(old / "data", (0, 0))
    live = cs.writer("live", None)
    live.write(b"y")
    live._file.flush()
    os.utime(live.dir / "data", (0, 0))
    try:
        assert cs.expire_ingests(3600) == 100
        assert [r for r, _ in cs.ingests()] == ["live"]   # its writer holds the lock
    finally:
        live.close()
    with cs.writer("fresh", None) as w:
        w.write(b"z")
    # Its writer gone, the old "live" ingest goes too; the fresh one stays.
    assert cs.expire_ingests(3600) == 1 and cs.ingests() == [("fresh", 1)]
