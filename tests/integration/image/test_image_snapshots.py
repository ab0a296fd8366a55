"""Overlay (and copy) snapshots mount correctly, share layers, and apply whiteouts."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from ketch.engine import images
from tests.integration.image.conftest import chroot_sh, ketch, mounted


def test_bootstrap_busybox_is_a_proper_image(busybox, conn):
    rec = images.resolve(conn, "docker.io/library/busybox:latest")
    assert rec.repo_tags == ["busybox:latest"]
    assert rec.config["config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") for e in rec.config["config"]["Env"])
    assert len(rec.config["rootfs"]["diff_ids"]) == 1
    out = ketch("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    assert out == "busybox:latest\n"
    # Reproducible: bootstrapping again gives the same image.
    assert ketch("bootstrap", "busybox", "-q").stdout.decode().strip() == rec.id


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_containers_share_layers_and_keep_their_own_changes(busybox, tmp_path, monkeypatch,
                                                            snapshotter):
    monkeypatch.setenv("KETCH_SNAPSHOTTER", snapshotter)
    from ketch.engine import db

    c = db.connect()
    if snapshotter == "copy":
        ketch("rmi", "busybox")
        ketch("bootstrap", "busybox", "-q")
    rec = images.resolve(c, "busybox")
    m1 = images.prepare_rootfs(c, rec, "c1")
    m2 = images.prepare_rootfs(c, rec, "c2")
    assert m1[0]["type"] == ("overlay" if snapshotter == "overlay" else "bind")
    with mounted(m1, tmp_path / "r1") as r1, mounted(m2, tmp_path / "r2") as r2:
        out = chroot_sh(r1, "echo one > /tmp/f; rm /bin/ls; id -un nobody; ls /usr/bin | wc -l")
        assert out.split()[0] == "nobody" and int(out.split()[1]) > 50
        assert not (r2 / "tmp" / "f").exists() and (r2 / "bin" / "ls").is_symlink()
        assert chroot_sh(r2, "cat /etc/group") == "root:x:0:\nnogroup:x:65534:\n"
    diff = {d["Path"]: d["Kind"] for d in images.rootfs_diff(c, "c1")}
    assert diff["/tmp/f"] == 1 and diff["/bin/ls"] == 2 and diff.get("/tmp") == 0
    df = images.disk_usage(c)
    sizes = {c["Id"]: c for c in df["Containers"]}
    # The thin layer holds only the change; the image bytes are not copied (overlay).
    if snapshotter == "overlay":
        assert sizes["c1"]["SizeRw"] < 64 * 1024 < rec.size
    assert sizes["c1"]["SizeRootFs"] >= rec.size
    images.remove_rootfs(c, "c1")
    images.remove_rootfs(c, "c2")
    assert images.check(c) == []


def _layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _docker_archive(path, layers, tag):
    import hashlib

    diff_ids = ["sha256:" + hashlib.sha256(ly).hexdigest() for ly in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    with tarfile.open(path, "w") as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        names = []
        for i, ly in enumerate(layers):
            names.append(f"l{i}/layer.tar")
            add(names[-1], ly)
        add("cfg.json", cfg)
        add("manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": [tag],
                                          "Layers": names}]).encode())


def test_whiteouts_through_a_real_overlay_mount(busybox, conn, tmp_path):
    base = _layer([("d", None), ("d/old", b"1"), ("d/keep", b"2"), ("gone", b"3"),
                   ("e", None), ("e/x", b"4")])
    top = _layer([(".wh.gone", b""), ("d", None), ("d/.wh.old", b""), ("e", None),
                  ("e/.wh..wh..opq", b""), ("e/y", b"5")])
    _docker_archive(tmp_path / "a.tar", [base, top], "wh:1")
    assert ketch("load", "-q", "-i", str(tmp_path / "a.tar")).stdout == b"Loaded image: wh:1\n"
    rec = images.resolve(conn, "wh:1")
    assert len(rec.chain) == 2
    mounts = images.prepare_rootfs(conn, rec, "w1")
    with mounted(mounts, tmp_path / "m") as m:
        assert sorted(os.listdir(m)) == ["d", "e"]
        assert sorted(os.listdir(m / "d")) == ["keep"]
        assert sorted(os.listdir(m / "e")) == ["y"]
    export = io.BytesIO()
    images.export_rootfs(conn, "w1", export)
    export.seek(0)
    names = sorted(tarfile.open(fileobj=export).getnames())
    assert names == ["d", "d/keep", "e", "e/y"]
    images.remove_rootfs(conn, "w1")


def test_rmi_refuses_image_in_use_and_prune_keeps_shared_layers(busybox, conn):
    rec = images.resolve(conn, "busybox")
    images.prepare_rootfs(conn, rec, "user1")
    proc = ketch("rmi", "busybox", check=False)
    assert proc.returncode == 1 and b"is using its referenced image" in proc.stderr
    ketch("tag", "busybox", "other:1")
    assert ketch("rmi", "busybox").stdout == b"Untagged: busybox:latest\n"
    ketch("rmi", "-f", "other:1")
    assert images.check(conn) == []          # the container's layers survive the image
    images.remove_rootfs(conn, "user1")
    out = ketch("image", "prune", "-af").stdout.decode()
    assert "Total reclaimed space" in out
    root = os.environ["KETCH_ROOT"]
    assert os.listdir(f"{root}/content/blobs/sha256") == []
    left = [p for p in os.listdir(f"{root}/snapshots/overlay") if not p.startswith(".")]
    assert left in ([], ["l"]) and not os.listdir(f"{root}/snapshots/overlay/l")


def test_commit_makes_a_new_image_on_top(busybox, conn, tmp_path):
    rec = images.resolve(conn, "busybox")
    mounts = images.prepare_rootfs(conn, rec, "cm")
    with mounted(mounts, tmp_path / "m") as m:
        chroot_sh(m, "echo hello > /greeting; rm -r /var/www")
    new = images.commit(conn, "cm", rec, "committed:1", changes=["CMD cat /greeting"],
                        message="mine")
    images.remove_rootfs(conn, "cm")
    assert new.chain[0] == rec.chain[0] and len(new.chain) == 2
    assert new.config["config"]["Cmd"] == ["/bin/sh", "-c", "cat /greeting"]
    hist = json.loads(ketch("history", "--format", "json", "committed:1").stdout.splitlines()[0])
    assert hist["Comment"] == "mine"
    mounts = images.prepare_rootfs(conn, new, "cm2")
    with mounted(mounts, tmp_path / "m2") as m:
        assert (m / "greeting").read_text() == "hello\n" and not (m / "var" / "www").exists()
    images.remove_rootfs(conn, "cm2")


def test_many_layers_fit_one_overlay_mount(ketch_env, conn, tmp_path):
    layers = [_layer([(f"f{i:02d}", str(i).encode())]) for i in range(30)]
    _docker_archive(tmp_path / "many.tar", layers, "many:1")
    ketch("load", "-q", "-i", str(tmp_path / "many.tar"))
    rec = images.resolve(conn, "many:1")
    mounts = images.prepare_rootfs(conn, rec, "many")
    with mounted(mounts, tmp_path / "m") as m:
        assert sorted(os.listdir(m)) == [f"f{i:02d}" for i in range(30)]
        assert (m / "f29").read_text() == "29"
    images.remove_rootfs(conn, "many")
