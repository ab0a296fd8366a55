"""A prune that runs while a pull is in flight must not take the pull's blobs.

The pull holds the store's GC lease from its first blob to the recorded
image; `ketch image prune` (GC) takes the lease exclusively, so it waits.
Without the lease the prune would delete the config and manifest blobs the
pull committed (no image names them yet) and `ketch system check` would
report them missing.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from ketch.engine import db
from ketch.engine import images as _images
from ketch.oci import digest as _digest
from tests.conftest import command
from tests.integration.registry.registry_images import build_layout, busybox_files, skopeo_push
from tests.integration.registry.test_registry_resume import ThrottlingProxy, _ingest_bytes


def test_prune_during_a_pull_leaves_the_pull_whole(registry, tmp_path, ketch_env, ketch):
    lay = tmp_path / "layout"
    m = build_layout(lay, [busybox_files(), {"big": os.urandom(3 << 20)}], compresslevel=1)
    skopeo_push(lay, "latest", f"{registry.host}/race/prune:1")
    proxy = ThrottlingProxy(registry.host, bytes_per_sec=2 << 20)
    ref = f"{proxy.host}/race/prune:1"
    root = Path(ketch_env["KETCH_ROOT"])
    try:
        pull = subprocess.Popen([command("ketch"), "pull", "-q", ref], env=dict(os.environ),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while _ingest_bytes(root, m["layers"][1]["digest"]) < (256 << 10) \
                and pull.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pull.poll() is None, f"pull ended before the prune started: {pull.stderr.read()}"
        prune = ketch("image", "prune", "-f", timeout=120)
        out, err = pull.communicate(timeout=120)
    finally:
        proxy.stop()
    assert pull.returncode == 0, err
    assert out.strip() == ref
    assert prune.returncode == 0, prune.stderr
    check = ketch("system", "check")
    assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stdout
    store = _images.store(db.connect())
    rec = store.resolve(ref)
    assert rec.id == m["config_digest"]
    for dig in [rec.manifest_digest, rec.id, *(ly["digest"] for ly in m["layers"])]:
        assert store.content.exists(dig), dig
    top = store.snap.fs(_digest.hex_of(rec.chain[-1]))
    assert (top / "big").stat().st_size == 3 << 20
