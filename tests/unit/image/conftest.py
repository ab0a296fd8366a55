"""Fixtures for image unit tests: a store on the copy snapshotter in a temp root."""

from __future__ import annotations

import io
import sqlite3
import tarfile

import pytest

from ketch.image.store import ImageStore


def layer_tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_SNAPSHOTTER", "copy")
    conn = sqlite3.connect(tmp_path / "ketch.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    yield ImageStore(conn, tmp_path)
    conn.close()
