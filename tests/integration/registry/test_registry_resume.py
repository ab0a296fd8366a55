"""Killing `ketch pull` mid-download leaves the store consistent, and the next pull
resumes with a Range request instead of starting over.

A small proxy in front of the real registry slows blob bodies down (so the
kill lands mid-layer) and records the Range header and the bytes it sent.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ketch.engine import db
from ketch.engine import images as _images
from ketch.snapshot.base import pick
from tests.conftest import command
from tests.integration.registry.registry_images import build_layout, busybox_files, skopeo_push

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class ThrottlingProxy:
    def __init__(self, upstream: str, bytes_per_sec: int):
        self.log: list[dict] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                proxy.forward(self)

            def do_HEAD(self):  # noqa: N802
                proxy.forward(self)

            def log_message(self, *args):
                pass

        self.upstream, self.rate = upstream, bytes_per_sec
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        up = http.client.HTTPConnection(self.upstream, timeout=30)
        headers: dict[str, str] = {}
        for k, v in h.headers.items():   # repeated headers (skopeo's Accept) joined
            if k.lower() not in _HOP | {"host"}:
                headers[k] = f"{headers[k]}, {v}" if k in headers else v
        up.request(h.command, h.path, headers=headers)
        resp = up.getresponse()
        entry = {"path": h.path, "range": h.headers.get("Range"), "sent": 0}
        self.log.append(entry)
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP:
                h.send_header(k, v)
        h.end_headers()
        slow = "/blobs/" in h.path and h.command == "GET"
        try:
            while h.command != "HEAD" and (chunk := resp.read(32 << 10)):
                h.wfile.write(chunk)
                entry["sent"] += len(chunk)
                if slow:
                    time.sleep(len(chunk) / self.rate)
        except OSError:
            pass  # the client went away (killed): that is the point
        finally:
            up.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _ingest_bytes(root: Path, ref: str = "*") -> int:
    """Bytes in the content store's ingest for `ref` (a blob digest), or for all refs."""
    name = hashlib.sha256(ref.encode()).hexdigest() if ref != "*" else "*"
    total = 0
    for data in (root / "content" / "ingest").glob(f"{name}/data"):
        try:
            total += data.stat().st_size
        except FileNotFoundError:
            pass
    return total


def test_killed_pull_resumes_with_range(registry, tmp_path, ketch_env):
    lay = tmp_path / "layout"
    big = os.urandom(6 << 20)  # incompressible: the blob is ~6 MiB
    m = build_layout(lay, [busybox_files(), {"big": big}], compresslevel=1)
    skopeo_push(lay, "latest", f"{registry.host}/resume/big:1")
    layer = m["layers"][1]
    proxy = ThrottlingProxy(registry.host, bytes_per_sec=3 << 20)
    ref = f"{proxy.host}/resume/big:1"
    root = Path(ketch_env["KETCH_ROOT"])
    try:
        proc = subprocess.Popen([command("ketch"), "pull", "-q", ref], env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _ingest_bytes(root, layer["digest"]) < (1 << 20) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"pull ended before it could be killed: {proc.stderr.read()}"
        # The layer unpacks while it downloads: its file is in the staged snapshot
        # before the blob is complete.
        staged = root / "snapshots" / "overlay"
        streams = pick(root / "snapshots").name == "overlay"   # copy unpacks in chain order
        while streams and not list(staged.glob(".new-*/fs/big")) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not streams or list(staged.glob(".new-*/fs/big")), "no streamed unpack seen"
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        partial = _ingest_bytes(root, layer["digest"])
        assert 0 < partial < layer["size"]

        # Killed: nothing committed for the big layer, no image recorded.
        store = _images.store(db.connect())
        assert not store.content.exists(layer["digest"])
        assert store.resolve_id(f"{proxy.host}/resume/big:1") is None
        check = subprocess.run([command("ketch"), "system", "check"], env=dict(os.environ),
                               capture_output=True, text=True)
        assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stdout

        proxy.log.clear()
        out = subprocess.run([command("ketch"), "pull", "-q", ref], env=dict(os.environ),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        gets = [e for e in proxy.log if e["path"].endswith(layer["digest"])]
        assert len(gets) == 1
        start = int(gets[0]["range"].removeprefix("bytes=").rstrip("-"))
        assert start >= partial - (64 << 10) and start > 0  # resumed where the kill left it
        assert gets[0]["sent"] == layer["size"] - start
        assert store.content.verify(layer["digest"]) is None
        assert store.resolve(ref).id == m["config_digest"]
        assert _ingest_bytes(root) == 0
        assert not list(staged.glob(".new-*")), "the killed pull's staged layer was left"
    finally:
        proxy.stop()
