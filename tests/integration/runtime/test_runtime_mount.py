"""ketch.runtime.mount: the engine's rootfs mounts, all or nothing."""

from __future__ import annotations

import pytest

from ketch.errors import FailedPrecondition
from ketch.runtime import mount


def test_overlay_mount_and_unmount(tmp_path):
    lower, upper, work, target = (tmp_path / n for n in ("lower", "upper", "work", "rootfs"))
    for d in (lower, upper, work):
        d.mkdir()
    (lower / "base").write_text("from the image\n")
    mount.mount_all([{"type": "overlay", "source": "overlay",
                      "options": [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"]}],
                    str(target))
    assert (target / "base").read_text() == "from the image\n"
    (target / "new").write_text("x")
    assert (upper / "new").exists()
    assert mount.mounted_under(str(target)) == [str(target)]
    mount.unmount_all(str(target))
    assert mount.mounted_under(str(target)) == []
    assert not (target / "base").exists()


def test_failure_halfway_unmounts_what_was_done(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    target = tmp_path / "rootfs"
    with pytest.raises(FailedPrecondition, match="no-such-dir"):
        mount.mount_all([{"type": "bind", "source": str(src), "options": ["rbind"]},
                         {"type": "bind", "source": str(tmp_path / "no-such-dir"),
                          "destination": "/sub", "options": ["bind"]}], str(target))
    assert mount.mounted_under(str(target)) == []
