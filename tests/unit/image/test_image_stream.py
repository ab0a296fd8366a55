"""Unpacking a layer while it downloads: the ingest follower and staged layers.

The follower must hand out end-of-data only once the blob verified, and a
streamed layer whose blob does not verify (or whose tar is hostile) must
leave no staged snapshot behind.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import types

import pytest

from ketch.content.store import ContentStore
from ketch.errors import DataError
from ketch.image import layers
from ketch.snapshot.overlay import OverlaySnapshotter
from tests.unit.image.conftest import layer_tar


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _store(tmp_path):
    return types.SimpleNamespace(content=ContentStore(tmp_path / "content"),
                                 snap=OverlaySnapshotter(tmp_path / "snap"))


def test_follower_reads_as_written_and_ends_only_when_told(tmp_path):
    cs = ContentStore(tmp_path)
    data = bytes(range(256)) * 4000
    with cs.writer("r", _digest(data), len(data)) as w:
        f = w.follow()
        got = []

        def consume():
            while chunk := f.read(7000):
                got.append(chunk)

        t = threading.Thread(target=consume)
        t.start()
        for i in range(0, len(data), 10_000):
            w.write(data[i:i + 10_000])
        t.join(0.2)
        assert t.is_alive(), "EOF before the writer ended"
        w.commit()
        w.end_follow(True)
        t.join(5)
        f.close()
    assert b"".join(got) == data


def test_follower_raises_when_the_write_fails_or_is_cancelled(tmp_path):
    cs = ContentStore(tmp_path)
    with cs.writer("r", _digest(b"xy"), 1 << 20) as w:
        f = w.follow()
        w.write(b"x" * (300 << 10))   # more than a wake-up step: visible now
        assert f.read(10) == b"x" * 10
        w.end_follow(False)
        with pytest.raises(DataError, match="did not complete"):
            while f.read(1 << 20):   # what was written, then the failure
                pass
        f.close()
    with cs.writer("q", _digest(b"xy"), 2) as w:
        f = w.follow()
        threading.Timer(0.1, f.cancel).start()
        with pytest.raises(DataError, match="cancelled"):
            f.read(10)   # blocked until the cancel
        f.close()


def _fetcher(payload: bytes):
    def fetch(writer, on_bytes):
        for i in range(0, len(payload), 4096):
            writer.write(payload[i:i + 4096])
            on_bytes(i + 4096)
    return fetch


def test_streamed_layer_is_staged_after_the_blob_verifies(tmp_path):
    store = _store(tmp_path)
    raw = layer_tar({"etc/motd": b"hello\n" * 1000}).getvalue()
    blob = gzip.compress(raw)
    desc = {"digest": _digest(blob), "size": len(blob)}
    staged = layers.stage_streaming(store, desc, _digest(raw), _digest(raw), _fetcher(blob),
                                    None, threading.Event())
    assert (staged.fs / "etc" / "motd").read_bytes() == b"hello\n" * 1000
    assert store.content.exists(desc["digest"])
    layers.discard(store, staged)
    assert not list((tmp_path / "snap").glob(".new-*"))


@pytest.mark.parametrize("case", ["digest", "diff_id", "hostile"])
def test_streamed_layer_that_does_not_verify_leaves_nothing(tmp_path, case):
    store = _store(tmp_path)
    raw = layer_tar({"a": b"1" * 50_000}).getvalue()
    if case == "hostile":
        raw = layer_tar({"../escape": b"x"}).getvalue()
    blob = raw if case == "digest" else gzip.compress(raw)
    sent, diff_id = blob, _digest(raw)
    if case == "digest":
        # A flipped byte in the end-of-archive padding: the tar unpacks fine and
        # matches a diff_id made for it; only the blob digest tells.
        sent = blob[:-1] + b"\x01"
        diff_id = _digest(sent)
    if case == "diff_id":
        diff_id = _digest(b"other")
    desc = {"digest": _digest(blob), "size": len(blob)}
    with pytest.raises(DataError):
        layers.stage_streaming(store, desc, diff_id, diff_id, _fetcher(sent), None,
                               threading.Event())
    assert not list((tmp_path / "snap").glob(".new-*"))
    assert store.snap.keys() == []
    if case == "digest":
        assert not store.content.exists(desc["digest"])
    if case == "diff_id":   # the blob itself verified: it stays, the layer does not
        assert store.content.exists(desc["digest"])
