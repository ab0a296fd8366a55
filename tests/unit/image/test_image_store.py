"""The image index over SQLite: names, removal rules, GC by reachability, check, df.

Runs on the copy snapshotter in a temp root, so it needs neither root nor overlay.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from ketch.errors import Conflict, NotFound
from ketch.image import gc, importer
from tests.unit.image.conftest import layer_tar


def _base(store, name="base:1", files=None):
    return importer.import_tar(store, layer_tar(files or {"bin/tool": b"x" * 5000}), "-", name, [])


def test_names_resolve_like_docker(store):
    rec = _base(store, "busybox")
    assert rec.repo_tags == ["busybox:latest"]
    for name in ("busybox", "busybox:latest", "docker.io/library/busybox:latest",
                 rec.id, rec.id[7:], rec.id[7:19], rec.id[7:11]):
        assert store.resolve(name).id == rec.id, name
    with pytest.raises(NotFound, match="No such image: busybox:2"):
        store.resolve("busybox:2")


def test_layers_are_shared_between_images(store):
    base = _base(store)
    child = importer.create_image(store, base, None, {"Cmd": ["x"]}, ["child:1"],
                                  {"created_by": "CMD x"})
    assert child.chain == base.chain and child.id != base.id
    df = gc.disk_usage(store)
    shared = {i["Id"]: i["SharedSize"] for i in df["Images"]}
    assert shared[base.id] == shared[child.id] == base.size > 0
    assert df["LayersSize"] == base.size   # counted once, not twice


def test_rmi_rules(store):
    rec = _base(store, "a:1")
    store.tag(rec.id, "b:1")
    with pytest.raises(Conflict, match="referenced in multiple repositories"):
        gc.remove_image(store, rec.id[7:19])
    assert gc.remove_image(store, "a:1") == [{"Untagged": "a:1"}]
    store.conn.execute("INSERT INTO snapshots(key, parent, kind, image_id, snapshotter, created)"
                       " VALUES ('ctr', ?, 'active', ?, 'copy', 0)", (rec.chain[0][7:], rec.id))
    with pytest.raises(Conflict, match="container ctr is using"):
        gc.remove_image(store, "b:1")
    out = gc.remove_image(store, "b:1", force=True)
    assert out == [{"Untagged": "b:1"}, {"Deleted": rec.id}]
    # The container still holds the layer: GC keeps it.
    assert store.snap.exists(rec.chain[0][7:])
    store.conn.execute("DELETE FROM snapshots WHERE key='ctr'")
    assert gc.collect(store) > 0
    assert not store.snap.exists(rec.chain[0][7:]) and list(store.content.walk()) == []


def test_prune_dangling_then_all(store):
    keep = _base(store, "keep:1", {"a": b"1"})
    dangling = _base(store, "gone:1", {"b": b"2"})
    store.untag("gone:1")
    report, freed = gc.prune(store)
    assert report == [{"Deleted": dangling.id}] and freed > 0
    assert store.resolve("keep:1").id == keep.id
    report, _ = gc.prune(store, all_images=True)
    assert {"Deleted": keep.id} in report and store.summaries() == []


def test_check_finds_corruption_and_missing_pieces(store):
    rec = _base(store)
    assert gc.check(store) == []
    blob = rec.layers[0]["blob"]
    path = store.content.path(blob)
    os.chmod(path, 0o644)
    path.write_bytes(b"corrupt")
    store.snap.remove(rec.chain[0][7:])
    problems = gc.check(store)
    assert any(p.startswith(f"blob {blob}: content hashes to") for p in problems)
    assert any("layer snapshot" in p and "missing" in p for p in problems)


def test_unknown_change_and_bad_name_change_nothing(store):
    from ketch.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        importer.import_tar(store, layer_tar({"a": b"1"}), "-", "x:1", ["RUN true"])
    with pytest.raises(InvalidArgument):
        importer.import_tar(store, layer_tar({"a": b"1"}), "-", "Bad Name", [])
    assert store.summaries() == []


def test_load_legacy_docker_save_with_linked_layers(store, tmp_path):
    import hashlib
    import json

    from ketch.image import archive

    layer = layer_tar({"hello": b"world"}).getvalue()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = json.dumps({"os": "linux", "architecture": "amd64", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [diff, diff]}}).encode()
    path = tmp_path / "legacy.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in (("aaa/layer.tar", layer), ("cfg.json", cfg), ("manifest.json",
                           json.dumps([{"Config": "cfg.json", "RepoTags": ["old:1"],
                                        "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("bbb/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../aaa/layer.tar"
        tf.addfile(link)
        escape = tarfile.TarInfo("ccc/layer.tar")
        escape.type, escape.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
        tf.addfile(escape)
    assert archive.load(store, path) == ["Loaded image: old:1"]
    rec = store.resolve("old:1")
    assert len(rec.chain) == 2 and rec.layers[0]["blob"] == rec.layers[1]["blob"]
    # A link that climbs out resolves among members only: it names nothing.
    src = archive._Source(path)
    assert not src.has("ccc/layer.tar")
    src.close()


def test_rootfs_of_a_vanished_container_is_reported_then_collected(store):
    rec = _base(store)
    store.conn.execute("CREATE TABLE containers (id TEXT PRIMARY KEY, image_id TEXT)")
    store.conn.execute("INSERT INTO containers VALUES ('alive', ?)", (rec.id,))
    store.prepare_rootfs(rec, "alive")
    store.prepare_rootfs(rec, "ghost")          # its container row never existed
    assert [p for p in gc.check(store) if "ghost" in p] == [
        "container snapshot ghost: no such container (`ketch image prune` removes it)"]
    gc.collect(store)
    assert store.snap.exists("alive") and not store.snap.exists("ghost")
    assert gc.check(store) == []


def test_oci_layout_with_a_tampered_blob_is_refused(store, tmp_path):
    import json

    from ketch.errors import DataError
    from ketch.image import archive
    from ketch.oci import digest, image_spec

    lay = tmp_path / "layout"
    (lay / "blobs" / "sha256").mkdir(parents=True)

    def blob(data: bytes) -> str:
        d = digest.of_bytes(data)
        (lay / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return d

    layer = layer_tar({"f": b"1"}).getvalue()
    cfg = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {
        "type": "layers", "diff_ids": [digest.of_bytes(layer)]}}).encode()
    ldig, cdig = blob(layer), blob(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": image_spec.OCI_MANIFEST,
                      "config": {"mediaType": image_spec.OCI_CONFIG, "digest": cdig,
                                 "size": len(cfg)},
                      "layers": [{"mediaType": image_spec.OCI_LAYER, "digest": ldig,
                                  "size": len(layer)}]}).encode()
    mdig = blob(man)
    (lay / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": image_spec.OCI_MANIFEST, "digest": mdig, "size": len(man),
         "annotations": {"org.opencontainers.image.ref.name": "example.com/t:1"}}]}))
    (lay / "blobs" / "sha256" / ldig[7:]).write_bytes(layer[:-512] + b"x" * 512)
    with pytest.raises(DataError, match="digest mismatch"):
        archive.load(store, lay)
    assert store.summaries() == [] and gc.check(store) == []
    (lay / "blobs" / "sha256" / ldig[7:]).write_bytes(layer)
    assert archive.load(store, lay) == ["Loaded image: example.com/t:1"]
