"""save/load round trips with skopeo and umoci, import, and bad archives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from ketch.engine import images
from tests.conftest import need_tool
from tests.integration.image.conftest import ketch


def _run(*cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
    return proc.stdout


def test_save_is_read_by_skopeo_and_umoci(busybox, conn, tmp_path):
    skopeo, umoci = need_tool("skopeo"), need_tool("umoci")
    rec = images.resolve(conn, "busybox")
    ketch("save", "-o", str(tmp_path / "bb.tar"), "busybox")
    info = json.loads(_run(skopeo, "inspect", "--raw", f"docker-archive:{tmp_path}/bb.tar"))
    assert info["config"]["digest"] == rec.id
    _run(skopeo, "copy", "-q", f"oci-archive:{tmp_path}/bb.tar:latest", f"oci:{tmp_path}/oci:v1")
    _run(umoci, "unpack", "--image", f"{tmp_path}/oci:v1", str(tmp_path / "bundle"))
    rootfs = tmp_path / "bundle" / "rootfs"
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"[:0] + "../bin/busybox" or \
        (rootfs / "bin" / "sh").is_symlink()
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    # Back again: skopeo's docker-archive and the OCI directory load into ketch.
    _run(skopeo, "copy", "-q", f"docker-archive:{tmp_path}/bb.tar",
         f"docker-archive:{tmp_path}/sk.tar:copied/bb:2")
    proc = ketch("load", "-i", str(tmp_path / "sk.tar"))
    assert "Loaded image: copied/bb:2" in proc.stdout.decode()
    # Not a TTY: plain progress lines on stderr. skopeo stored the layer
    # uncompressed (another blob), but its diff ID is the same: not unpacked twice.
    assert proc.stderr.decode().endswith(": Already exists\n"), proc.stderr
    assert images.resolve(conn, "copied/bb:2").id == rec.id  # same config, same image
    out = ketch("load", "-q", "-i", str(tmp_path / "oci")).stdout.decode()
    assert out.startswith("Loaded image ID: sha256:")
    assert images.check(conn) == []


def test_umoci_built_image_loads_and_runs_files(ketch_env, conn, tmp_path):
    umoci = need_tool("umoci")
    layout = tmp_path / "layout"
    _run(umoci, "init", "--layout", str(layout))
    _run(umoci, "new", "--image", f"{layout}:t")
    _run(umoci, "unpack", "--image", f"{layout}:t", str(tmp_path / "b"))
    (tmp_path / "b" / "rootfs" / "hello").write_text("from umoci\n")
    _run(umoci, "repack", "--image", f"{layout}:t", str(tmp_path / "b"))
    _run(umoci, "config", "--image", f"{layout}:t", "--config.cmd", "/hello")
    tar = tmp_path / "layout.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(layout, arcname=".")
    line = ketch("load", "-q", "-i", str(tar)).stdout.decode().strip()
    image_id = line.rsplit(" ", 1)[1]
    rec = images.resolve(conn, image_id)
    assert rec.config["config"]["Cmd"] == ["/hello"]
    images.prepare_rootfs(conn, rec, "u1")
    out = io.BytesIO()
    images.export_rootfs(conn, "u1", out)
    out.seek(0)
    member = tarfile.open(fileobj=out).extractfile("hello")
    assert member.read() == b"from umoci\n"
    images.remove_rootfs(conn, "u1")


def test_import_with_changes_and_export_roundtrip(ketch_env, conn, tmp_path):
    src = tmp_path / "rootfs.tar"
    with tarfile.open(src, "w:gz") as tf:
        ti = tarfile.TarInfo("etc/motd")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"hi\n"))
    image_id = ketch("import", "-c", "ENV A=1", "-c", "WORKDIR /etc", "-c", "CMD cat motd",
                     "-m", "imported", str(src), "imp:1").stdout.decode().strip()
    insp = json.loads(ketch("image", "inspect", "imp:1").stdout)[0]
    assert insp["Id"] == image_id and insp["Config"]["Env"] == ["A=1"]
    assert insp["Config"]["WorkingDir"] == "/etc" and insp["Comment"] == "imported"
    assert insp["Config"]["Cmd"] == ["/bin/sh", "-c", "cat motd"]
    bad = ketch("import", "-c", "RUN rm -rf /", str(src), check=False)
    assert bad.returncode == 125 and bad.stderr.count(b"\n") == 1


def _docker_archive(path, layer: bytes, tag: str) -> None:
    """A one-layer docker-archive (docker save's layout) of `layer`, tagged `tag`."""
    import hashlib

    cfg = json.dumps({"rootfs": {"type": "layers",
                                 "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
                      "os": "linux", "architecture": "amd64"}).encode()
    with tarfile.open(path, "w") as tf:
        for name, body in (("l.tar", layer), ("c.json", cfg), ("manifest.json", json.dumps(
                [{"Config": "c.json", "RepoTags": [tag], "Layers": ["l.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(body)
            tf.addfile(ti, io.BytesIO(body))


def _evil_archive(path, member):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        ti = tarfile.TarInfo(member)
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"pwned"))
    _docker_archive(path, layer.getvalue(), "evil:1")


def test_bad_archives_fail_with_one_line_and_leave_the_store_consistent(ketch_env, conn,
                                                                         tmp_path):
    (tmp_path / "garbage.tar").write_bytes(b"not a tar at all" * 100)
    _evil_archive(tmp_path / "evil.tar", "../../../../tmp/ketch-image-escape")
    for archive, words in (("garbage.tar", b"not an image archive"),
                           ("evil.tar", b"escapes the root")):
        proc = ketch("load", "-q", "-i", str(tmp_path / archive), check=False)
        assert proc.returncode == 125, proc.stderr
        assert words in proc.stderr and proc.stderr.count(b"\n") == 1, proc.stderr
    assert not os.path.exists("/tmp/ketch-image-escape")
    assert ketch("images", "-q").stdout == b""
    assert images.check(conn) == []
    snaps = os.path.join(ketch_env["KETCH_ROOT"], "snapshots", "overlay")
    assert not os.path.isdir(snaps) or os.listdir(snaps) == []


def test_cli_errors_are_one_line(busybox):
    cases = [(["image", "inspect", "nope"], 1, b"No such image: nope"),
             (["rmi", "nope"], 1, b"No such image: nope"),
             (["tag", "nope", "x"], 125, b"No such image: nope"),
             (["tag", "busybox", "Bad:Name"], 125, b"invalid reference format"),
             (["images", "--filter", "bogus=1"], 125, b"invalid filter"),
             (["history", "nope"], 125, b"No such image"),
             (["load", "-i", "/nonexistent.tar"], 125, b"no such file"),
             (["bootstrap", "alpine"], 125, b"unknown base")]
    for args, rc, words in cases:
        proc = ketch(*args, check=False)
        assert proc.returncode == rc, (args, proc.returncode, proc.stderr)
        assert words in proc.stderr and proc.stderr.count(b"\n") == 1, (args, proc.stderr)
        assert b"Traceback" not in proc.stderr


def test_killed_load_leaves_a_consistent_store_and_loads_again(ketch_env, conn, tmp_path):
    import signal
    import time

    # One layer of many files, so the kill lands while it is being unpacked.
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        for i in range(4000):
            ti = tarfile.TarInfo(f"d{i % 40}/f{i}")
            ti.size = 2048
            tf.addfile(ti, io.BytesIO(os.urandom(2048)))
    archive = tmp_path / "big.tar"
    _docker_archive(archive, layer.getvalue(), "big:1")
    snaps = os.path.join(ketch_env["KETCH_ROOT"], "snapshots", "overlay")
    from tests.conftest import command

    proc = subprocess.Popen([command("ketch"), "load", "-q", "-i", str(archive)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.isdir(snaps) and any(n.startswith(".new-") for n in os.listdir(snaps)):
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the load finished before it could be interrupted")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ketch("images", "-q").stdout == b""          # nothing half-registered
    assert images.check(conn) == []
    assert ketch("load", "-q", "-i", str(archive)).stdout == b"Loaded image: big:1\n"
    ketch("image", "prune", "-f")                        # the killed run's leftovers go
    assert not any(n.startswith(".new-") for n in os.listdir(snaps))
    assert images.check(conn) == []
