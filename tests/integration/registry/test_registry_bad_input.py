"""Hostile or broken registries: one clear line, exit 125, no hang, store consistent.

Corruption is done the way it happens: the registry's own storage files are
damaged after a good push (docker-registry 2.8 does not re-verify on read).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ketch.engine import db
from ketch.engine import images as _images
from ketch.errors import NotFound
from ketch.oci import image_spec as spec
from ketch.registry import open_repository
from tests.integration.registry.registry_images import build_layout, busybox_files, skopeo_push
from tests.integration.registry.registry_servers import free_port


def _push_unique(registry, tmp_path: Path, name: str) -> dict:
    """A fresh image (its own blobs, so damaging them hurts no other test)."""
    lay = tmp_path / f"layout-{name}"
    m = build_layout(lay, [busybox_files(), {"etc/unique": os.urandom(200_000)}],
                     compresslevel=1)
    skopeo_push(lay, "latest", f"{registry.host}/bad/{name}:1")
    return m


def _blob_file(registry, digest: str) -> Path:
    hexpart = digest.split(":")[1]
    return (registry.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
            / "data")


def _assert_store_consistent(ref: str) -> None:
    store = _images.store(db.connect())
    with pytest.raises(NotFound):
        store.resolve(ref)
    for digest, _size in store.content.walk():
        assert store.content.verify(digest) is None, f"bad committed blob {digest}"


def _fails(ketch, ref: str, expect: str) -> str:
    out = ketch("pull", ref, timeout=60)
    assert out.returncode == 125, out
    err = out.stderr.strip()
    assert err.startswith("ketch: ") and "\n" not in err and "Traceback" not in err, err
    assert expect in err, err
    return err


def test_digest_mismatch(registry, tmp_path, ketch):
    m = _push_unique(registry, tmp_path, "mismatch")
    f = _blob_file(registry, m["layers"][1]["digest"])
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    ref = f"{registry.host}/bad/mismatch:1"
    _fails(ketch, ref, f"blob {m['layers'][1]['digest']}: digest mismatch")
    _assert_store_consistent(ref)


def test_truncated_blob(registry, tmp_path, ketch):
    m = _push_unique(registry, tmp_path, "truncated")
    f = _blob_file(registry, m["layers"][1]["digest"])
    f.write_bytes(f.read_bytes()[:50_000])
    ref = f"{registry.host}/bad/truncated:1"
    _fails(ketch, ref, "truncated")
    _assert_store_consistent(ref)


def test_manifest_pointing_at_a_missing_blob(registry, tmp_path, ketch):
    m = _push_unique(registry, tmp_path, "missing")
    _blob_file(registry, m["layers"][1]["digest"]).unlink()
    ref = f"{registry.host}/bad/missing:1"
    _fails(ketch, ref, f"blob {m['layers'][1]['digest']}")
    _assert_store_consistent(ref)


def test_unknown_layer_media_type(registry, tmp_path, ketch):
    m = _push_unique(registry, tmp_path, "media")
    doc = {"schemaVersion": 2, "mediaType": spec.OCI_MANIFEST, "config": m["config"],
           "layers": [dict(m["layers"][0], mediaType="application/x-ketch-unknown")]}
    repo = open_repository(registry.host, "bad/media")
    repo.put_manifest("odd", json.dumps(doc).encode(), spec.OCI_MANIFEST)
    repo.t.close()
    ref = f"{registry.host}/bad/media:odd"
    _fails(ketch, ref, "unknown layer media type 'application/x-ketch-unknown'")
    _assert_store_consistent(ref)


def test_tag_not_found(registry, ketch):
    err = _fails(ketch, f"{registry.host}/lib/bb:nope", "not found")
    assert err == (f"ketch: manifest for {registry.host}/lib/bb:nope not found: "
                   "manifest unknown")


def test_registry_down_fails_fast(ketch):
    port = free_port()  # nothing listens there
    err = _fails(ketch, f"127.0.0.1:{port}/x/y:1", "connection refused")
    assert f"cannot reach registry 127.0.0.1:{port}" in err


class _Junk(BaseHTTPRequestHandler):
    """A server speaking HTTP whose answers are not a registry's."""

    def do_GET(self):  # noqa: N802
        body = b"\x00\x01 certainly not json"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_garbage_answers(ketch):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Junk)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(8)
    stop = threading.Event()

    def babble():
        # Not even HTTP: a line of noise to every connection, then close.
        raw.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = raw.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-garbage\r\n\x00\xff\xfe\r\n\r\n")
            conn.close()
    t = threading.Thread(target=babble, daemon=True)
    t.start()
    try:
        _fails(ketch, f"127.0.0.1:{httpd.server_address[1]}/x/y:1", "not JSON")
        _fails(ketch, f"127.0.0.1:{raw.getsockname()[1]}/x/y:1", "answered garbage")
    finally:
        httpd.shutdown()
        httpd.server_close()
        stop.set()
        t.join()
        raw.close()


def test_push_of_an_unknown_image(registry, ketch):
    out = ketch("push", f"{registry.host}/lib/absent:1")
    assert out.returncode == 125
    assert out.stderr.strip() == ("ketch: An image does not exist locally with the tag: "
                                  f"{registry.host}/lib/absent:1")
