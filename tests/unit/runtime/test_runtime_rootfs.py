"""Mount policy against a recording syscall layer: order, flags, confinement to the rootfs."""

from __future__ import annotations

import os

import pytest

from ketch._sys import mount as m
from ketch.runtime import rootfs


class Recorder:
    """Stands in for rootfs.RealSys: records calls, creates nothing but directories."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, *args))
        return record

    def makedirs(self, path, mode=0o755):
        os.makedirs(path, mode, exist_ok=True)
        self.calls.append(("makedirs", path))

    def mounts(self):
        return [c[1:] for c in self.calls if c[0] == "mount"]


def test_parse_options_splits_flags_propagation_and_data():
    flags, prop, data = rootfs.parse_options(
        ["nosuid", "ro", "rprivate", "mode=755", "size=1m", "noexec", "rw"])
    assert flags == m.MS_NOSUID | m.MS_NOEXEC  # rw after ro clears it
    assert prop == m.MS_PRIVATE | m.MS_REC
    assert data == "mode=755,size=1m"


def test_secure_join_keeps_symlinks_inside_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")            # absolute: means <root>/etc
    os.symlink("../../../../..", root / "up")   # climbs: stops at the root
    os.symlink("up/etc", root / "chain")
    assert rootfs.secure_join(str(root), "/abs/passwd") == str(root / "etc/passwd")
    assert rootfs.secure_join(str(root), "/up/host") == str(root / "host")
    assert rootfs.secure_join(str(root), "/chain") == str(root / "etc")
    assert rootfs.secure_join(str(root), "/../../x") == str(root / "x")


def test_secure_join_symlink_loop_is_an_error(tmp_path):
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(OSError):
        rootfs.secure_join(str(tmp_path), "/a")


def test_mount_destination_through_symlink_lands_in_rootfs(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("/../../../tmp", root / "escape")
    rec = Recorder()
    rootfs.mount_entry(rec, str(root), {"destination": "/escape/x", "type": "tmpfs",
                                        "source": "tmpfs", "options": ["nosuid"]}, "/b")
    [(src, dest, fstype, flags, data)] = rec.mounts()
    assert dest == str(root / "tmp/x")
    assert (fstype, flags) == ("tmpfs", m.MS_NOSUID)


def test_readonly_bind_is_bind_then_remount(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rec = Recorder()
    rootfs.mount_entry(rec, str(tmp_path / "r"), {"destination": "/data", "type": "bind",
                                                  "source": str(src),
                                                  "options": ["rbind", "ro", "nosuid",
                                                              "rslave"]}, "/b")
    dest = str(tmp_path / "r/data")
    assert rec.mounts() == [
        (str(src), dest, None, m.MS_BIND | m.MS_REC),
        (None, dest, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | m.MS_NOSUID),
        (None, dest, None, m.MS_SLAVE | m.MS_REC),
    ]


def test_relative_bind_source_is_relative_to_bundle(tmp_path):
    rec = Recorder()
    rootfs.mount_entry(rec, str(tmp_path / "r"), {"destination": "/x", "source": "vol",
                                                  "options": ["bind"]}, "/bundle")
    assert rec.mounts()[0][0] == "/bundle/vol"


def test_prepare_root_default_is_rslave_then_private_parent_then_self_bind():
    rec = Recorder()
    rootfs.prepare_root(rec, "/b/rootfs", None)
    calls = rec.mounts()
    assert calls[0] == (None, "/", None, m.MS_SLAVE | m.MS_REC)
    # the parent mount of the rootfs ("/" here, from this host's mountinfo) goes private
    assert calls[1] == (None, "/", None, m.MS_PRIVATE)
    assert calls[2] == ("/b/rootfs", "/b/rootfs", None, m.MS_BIND | m.MS_REC)


def test_shared_root_propagation_is_reapplied_after_pivot():
    rec = Recorder()
    rootfs.root_propagation(rec, "shared")
    rootfs.root_propagation(rec, "slave")
    assert rec.mounts() == [(None, "/", None, m.MS_SHARED | m.MS_REC)]


def test_pivot_detaches_old_root_after_making_it_slave():
    rec = Recorder()
    rootfs.pivot(rec, "/r")
    assert rec.calls == [("chdir", "/r"), ("pivot_root", ".", "."),
                         ("mount", None, ".", None, m.MS_SLAVE | m.MS_REC),
                         ("umount2", ".", m.MNT_DETACH), ("chdir", "/")]


def test_devices_are_bound_in_a_user_namespace(tmp_path):
    rec = Recorder()
    rootfs.create_devices(rec, str(tmp_path), [], bind=True)
    binds = {c[0] for c in rec.mounts()}  # sources: the host nodes
    assert binds == {p for p, _, _ in rootfs.DEFAULT_DEVICES}
    assert not [c for c in rec.calls if c[0] == "mknod"]


def test_devices_mknod_with_spec_mode_and_owner(tmp_path):
    rec = Recorder()
    rootfs.create_devices(rec, str(tmp_path), [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
         "uid": 7, "gid": 8}], bind=False)
    fuse = str(tmp_path / "dev/fuse")
    assert ("mknod", fuse, 0o020600, os.makedev(10, 229)) in rec.calls
    assert ("chown", fuse, 7, 8) in rec.calls
    assert ("chmod", fuse, 0o600) in rec.calls
