"""Bundle -> micro-VM plan: resources, mounts, annotations, and early errors."""

from __future__ import annotations

import json
import os

import pytest

from ketch.errors import InvalidArgument, NotFound
from ketch.vm import spec


def _bundle(tmp_path, **cfg):
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    config = {"process": {"args": ["true"], "user": {"uid": 5, "gid": 6, "additionalGids": [7]},
                          "env": ["A=1"], "cwd": "/w"}, "root": {"path": "rootfs"}}
    config.update(cfg)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_defaults_and_process(tmp_path):
    p = spec.plan(_bundle(tmp_path))
    assert (p.cpus, p.memory_mib, p.readonly, p.hostfwd) == (1, spec.DEFAULT_MEMORY_MIB, False, [])
    assert (p.process.args, p.process.env, p.process.cwd) == (["true"], ["A=1"], "/w")
    assert (p.process.uid, p.process.gid, p.process.groups) == (5, 6, [7])


@pytest.mark.parametrize("cpu,want", [({"quota": 50000, "period": 100000}, 1),
                                      ({"quota": 150000, "period": 100000}, 2),
                                      ({"cpus": "0"}, 1), ({}, 1)])
def test_vcpus_round_up(cpu, want):
    assert spec.vcpus({"cpu": cpu}) == min(want, os.cpu_count())


def test_memory_adds_the_guest_kernel_extra():
    assert spec.memory_mib({"memory": {"limit": 256 << 20}}) == 256 + spec.GUEST_EXTRA_MIB
    assert spec.memory_mib({"memory": {"limit": 1 << 20}}) == spec.MIN_MEMORY_MIB
    assert spec.memory_mib({}) == spec.DEFAULT_MEMORY_MIB


def test_mounts_become_shares_files_and_tmpfs(tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    p = spec.plan(_bundle(tmp_path, mounts=[
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "bind", "source": str(tmp_path / "vol"), "options": ["rbind", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": str(tmp_path / "hosts"), "options": ["bind"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}]))
    assert p.shares == [(tmp_path / "vol", "/data", True)]
    assert p.files == [(tmp_path / "hosts", "/etc/hosts")]
    assert p.tmpfs == ["/run"]


def test_missing_volume_source_is_an_error_before_boot(tmp_path):
    bundle = _bundle(tmp_path, mounts=[{"destination": "/d", "type": "bind",
                                        "source": str(tmp_path / "nope"), "options": ["rbind"]}])
    with pytest.raises(NotFound, match="volume source .*nope.*: no such file or directory"):
        spec.plan(bundle)


def test_port_annotations(tmp_path):
    p = spec.plan(_bundle(tmp_path, annotations={"ketch.vm.ports": "tcp:127.0.0.1:8080-:80, udp::53-:53"}))
    assert p.hostfwd == ["tcp:127.0.0.1:8080-:80", "udp::53-:53"]
    assert spec.plan(_bundle(tmp_path, annotations={"ketch.vm.network": "none"})).hostfwd is None
    with pytest.raises(InvalidArgument, match="ketch.vm.ports rule 'tcp:80'"):
        spec.plan(_bundle(tmp_path, annotations={"ketch.vm.ports": "tcp:80"}))


def test_bad_bundles(tmp_path):
    with pytest.raises(NotFound, match="no config.json"):
        spec.plan(tmp_path)
    with pytest.raises(InvalidArgument, match="process.args must not be empty"):
        spec.plan(_bundle(tmp_path, process={"args": []}))


def test_erofs_cache_is_keyed_and_bounded(tmp_path, monkeypatch):
    import shutil

    from ketch.vm import rootfs
    if shutil.which("mkfs.erofs") is None:
        pytest.skip("needs mkfs.erofs (erofs-utils)")
    monkeypatch.setenv("KETCH_VM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(rootfs, "CACHE_ENTRIES", 2)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    first = rootfs.image_for(tree)
    assert rootfs.image_for(tree) == first                        # same tree, same image
    assert rootfs.image_for(tree, {"ketch.vm.image-id": "sha256:a"}) != first
    (tree / "f").write_text("22")                                 # a change, a new image
    changed = rootfs.image_for(tree)
    assert changed != first and changed.exists()
    assert len(list(changed.parent.glob("*.erofs"))) == 2
