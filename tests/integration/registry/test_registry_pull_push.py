"""Pull and push against a real docker-registry (distribution 2.8), through the CLI
and the engine facade; interop checked with skopeo."""

from __future__ import annotations

import json
import subprocess

from ketch.engine import db, distribution
from ketch.engine import images as _images
from ketch.oci import digest as _digest
from ketch.oci import image_spec as spec
from ketch.registry import open_repository
from tests.integration.registry.registry_images import build_layout, busybox_files


def _image(ref: str):
    """(ImageRecord, ImageStore) of a local image, on a fresh connection."""
    store = _images.store(db.connect())
    return store.resolve(ref), store


def test_pull_cli_registers_a_ready_image(registry, layout, ketch):
    ref = f"{registry.host}/lib/bb:1"
    out = ketch("pull", ref)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1: Pulling from lib/bb"  # the remote path, as Docker prints it
    assert f"Digest: {layout[1]['digest']}" in lines
    assert lines[-2] == f"Status: Downloaded newer image for {ref}"
    assert lines[-1] == ref
    rec, store = _image(ref)
    assert rec.id == layout[1]["config_digest"]
    assert f"{registry.host}/lib/bb@{layout[1]['digest']}" in rec.repo_digests
    # The bottom layer's snapshot holds busybox: the image is ready to run.
    bottom = _digest.hex_of(rec.chain[0])
    assert (store.snap.fs(bottom) / "bin" / "busybox").stat().st_size > 100_000
    for layer in layout[1]["layers"]:
        assert store.content.verify(layer["digest"]) is None
    again = ketch("pull", ref)
    assert again.returncode == 0
    assert f"Status: Image is up to date for {ref}" in again.stdout
    assert "Already exists" in again.stdout
    quiet = ketch("pull", "-q", ref)
    assert quiet.stdout == ref + "\n"


def test_push_with_cross_repo_mount_and_chunks_then_skopeo_reads_it(
        registry, layout, ketch, tmp_path, monkeypatch):
    src = f"{registry.host}/lib/bb:1"
    assert ketch("pull", "-q", src).returncode == 0
    rec, store = _image(src)
    store.tag(rec.id, f"{registry.host}/other/copy:2")
    events = []
    monkeypatch.setenv("KETCH_PUSH_CHUNK_SIZE", "65536")  # exercise PATCH chunks
    rep = distribution.push(f"{registry.host}/other/copy:2", progress=events.append)
    assert rep.digest == layout[1]["digest"]
    statuses = {e.status for e in events if e.id}
    # Every blob was mounted from lib/bb: nothing re-uploaded.
    assert statuses == {"Preparing", "Mounted from lib/bb"}, statuses

    # A new image (new layer) is uploaded in chunks; the registry checks each digest.
    layout2 = tmp_path / "layout2"
    m2 = build_layout(layout2, [busybox_files(), {"etc/new": b"x" * 300_000}], compresslevel=0)
    conn = db.connect()
    s2 = _images.store(conn)
    for blob in (layout2 / "blobs" / "sha256").iterdir():
        s2.content.put(blob.read_bytes(), "sha256:" + blob.name)
    s2.add_manifest(m2["digest"], [f"{registry.host}/lib/new:1"])
    events.clear()
    distribution.push(f"{registry.host}/lib/new:1", progress=events.append)
    blobs = {_digest.short(d["digest"]) for d in [m2["config"], *m2["layers"]]}
    assert {e.id for e in events if e.status == "Pushed"} == blobs
    # the 300 kB layer went up in 64 KiB PATCH chunks: progress saw several steps
    big = _digest.short(m2["layers"][1]["digest"])
    assert len([e for e in events if e.id == big and e.status == "Pushing"]) >= 4
    events.clear()
    distribution.push(f"{registry.host}/lib/new:1", progress=events.append)
    assert {e.id for e in events if e.status == "Layer already exists"} == blobs
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{registry.host}/lib/new:1"],
                         capture_output=True, check=True)
    assert _digest.of_bytes(out.stdout) == m2["digest"]
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{registry.host}/lib/new:1", f"oci:{tmp_path}/back:1"], check=True)


def test_index_platform_selection_and_all_tags(registry, tmp_path, ketch):
    """An index with amd64 and arm64 images, written by ketch's own client."""
    repo = open_repository(registry.host, "multi/arch")
    descs = []
    for arch in ("amd64", "arm64"):
        lay = tmp_path / arch
        m = build_layout(lay, [{"etc": None, "etc/arch": arch.encode()}], platform=("linux", arch))
        blobs = lay / "blobs" / "sha256"
        for d in [m["config"], *m["layers"]]:
            repo.upload_blob(d, lambda p=blobs / d["digest"][7:]: open(p, "rb"))
        raw = (blobs / m["digest"][7:]).read_bytes()
        repo.put_manifest(m["digest"], raw, spec.OCI_MANIFEST)
        descs.append({"mediaType": spec.OCI_MANIFEST, "digest": m["digest"], "size": len(raw),
                      "platform": {"os": "linux", "architecture": arch,
                                   **({"variant": "v8"} if arch == "arm64" else {})}})
    index = json.dumps({"schemaVersion": 2, "mediaType": spec.OCI_INDEX,
                        "manifests": descs}).encode()
    repo.put_manifest("v1", index, spec.OCI_INDEX)
    repo.put_manifest("v2", index, spec.OCI_INDEX)
    repo.t.close()

    ref = f"{registry.host}/multi/arch:v1"
    out = ketch("pull", "--platform", "linux/arm64", ref)
    assert out.returncode == 0, out.stderr
    assert f"Digest: {_digest.of_bytes(index)}" in out.stdout
    rec, store = _image(ref)
    assert rec.config["architecture"] == "arm64"
    # The repo digest is the index's, as Docker records it; name@digest finds it.
    assert rec.repo_digests == [f"{registry.host}/multi/arch@{_digest.of_bytes(index)}"]
    assert store.resolve(f"{registry.host}/multi/arch@{_digest.of_bytes(index)}").id == rec.id
    assert store.content.exists(_digest.of_bytes(index))
    assert (store.snap.fs(_digest.hex_of(rec.chain[0])) / "etc" / "arch").read_text() == "arm64"
    bad = ketch("pull", "--platform", "linux/s390x", ref)
    assert bad.returncode == 125
    assert bad.stderr.strip() == ("ketch: no matching manifest for linux/s390x "
                                  "in the manifest list entries")
    both = ketch("pull", "-a", "-q", "--platform", "linux/amd64", f"{registry.host}/multi/arch")
    assert both.returncode == 0, both.stderr
    assert both.stdout.split() == [f"{registry.host}/multi/arch:v1",
                                   f"{registry.host}/multi/arch:v2"]
    assert _image(f"{registry.host}/multi/arch:v2")[0].config["architecture"] == "amd64"
    tag_and_all = ketch("pull", "-a", ref)
    assert tag_and_all.returncode == 125
    assert "tag can't be used with --all-tags/-a" in tag_and_all.stderr


def test_platform_of_a_single_manifest_is_checked_when_asked(registry, ketch):
    ref = f"{registry.host}/lib/bb:1"  # a linux/amd64 image, no index
    out = ketch("pull", "--platform", "linux/arm64", ref)
    assert out.returncode == 125
    assert out.stderr.strip() == (f"ketch: image with reference {ref} was found but does not "
                                  "match the specified platform: wanted linux/arm64/v8, "
                                  "actual: linux/amd64")
    assert ketch("pull", "-q", "--platform", "linux/amd64", ref).returncode == 0


def test_docker_schema2_manifest_pulls(registry, layout, ketch):
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", "v2s2",
                    f"oci:{layout[0]}:latest", f"docker://{registry.host}/lib/docker:1"],
                   check=True)
    out = ketch("pull", f"{registry.host}/lib/docker:1")
    assert out.returncode == 0, out.stderr
    rec, _ = _image(f"{registry.host}/lib/docker:1")
    assert rec.manifest_media_type == spec.DOCKER_MANIFEST


def test_two_concurrent_pulls_of_one_image(registry, layout, ketch_env):
    """Same root, same time: both succeed, every blob is written once and verifies."""
    from tests.conftest import command
    ref = f"{registry.host}/lib/bb:1"
    procs = [subprocess.Popen([command("ketch"), "pull", "-q", ref], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rec, store = _image(ref)
    assert rec.id == layout[1]["config_digest"]
    blobs = dict(store.content.walk())
    for d in [layout[1]["config"], *layout[1]["layers"]]:
        assert blobs[d["digest"]] == d["size"]
        assert store.content.verify(d["digest"]) is None
    assert store.content.ingests() == []


def test_push_all_tags(registry, ketch):
    src = f"{registry.host}/lib/bb:1"
    assert ketch("pull", "-q", src).returncode == 0
    rec, store = _image(src)
    for tag in ("a", "b"):
        store.tag(rec.id, f"{registry.host}/every/tag:{tag}")
    out = ketch("push", "-a", "-q", f"{registry.host}/every/tag")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"{registry.host}/every/tag:a", f"{registry.host}/every/tag:b"]
    repo = open_repository(registry.host, "every/tag")
    assert sorted(repo.tags()) == ["a", "b"]
    repo.t.close()


def test_pull_by_digest_records_no_tag(registry, layout):
    digest = layout[1]["digest"]
    [rep] = distribution.pull(f"{registry.host}/lib/bb@{digest}")
    assert rep.digest == digest
    rec = _images.store(db.connect()).resolve(f"{registry.host}/lib/bb@{digest}")
    assert rec.repo_tags == []
    assert rec.repo_digests == [f"{registry.host}/lib/bb@{digest}"]


def test_pull_with_the_copy_snapshotter(registry, layout, ketch, monkeypatch):
    """Copy layers hold their parent's tree, so they unpack in chain order."""
    monkeypatch.setenv("KETCH_SNAPSHOTTER", "copy")
    ref = f"{registry.host}/lib/bb:1"
    out = ketch("pull", "-q", ref)
    assert out.returncode == 0, out.stderr
    rec, store = _image(ref)
    assert store.snap.name == "copy"
    top = store.snap.fs(_digest.hex_of(rec.chain[-1]))
    assert (top / "etc" / "motd").read_bytes() == b"pulled by ketch\n"
    assert (top / "bin" / "busybox").stat().st_size > 100_000   # the parent's, copied
    check = ketch("system", "check")
    assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stdout
