"""openat2(RESOLVE_IN_ROOT): the kernel keeps `..` and absolute links inside the root."""

from __future__ import annotations

import errno
import os

import pytest

from ketch._sys.openat2 import Resolve, openat2


def _where(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_in_root_resolution(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "link").symlink_to("/etc")              # absolute: means root/etc here
    (root / "up").symlink_to("../../../../")        # climbs: stops at root
    rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = openat2(rfd, "link", os.O_PATH | os.O_DIRECTORY, 0, Resolve.IN_ROOT)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                pytest.skip("kernel without openat2 (Linux < 5.6)")
            raise
        assert _where(fd) == str(root / "etc")
        os.close(fd)
        fd = openat2(rfd, "up/../etc", os.O_PATH | os.O_DIRECTORY, 0, Resolve.IN_ROOT)
        assert _where(fd) == str(root / "etc")
        os.close(fd)
        with pytest.raises(FileNotFoundError):
            openat2(rfd, "/usr", os.O_PATH, 0, Resolve.IN_ROOT)   # the host's /usr is not seen
        with pytest.raises(OSError) as info:
            openat2(rfd, "link", os.O_PATH, 0, Resolve.NO_SYMLINKS)
        assert info.value.errno == errno.ELOOP
    finally:
        os.close(rfd)
