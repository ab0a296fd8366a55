"""Which protected view of the interpreter stage 1 is exec'd from (spawn.py)."""

from __future__ import annotations

import errno
import fcntl
import os

from ketch.runtime import spawn


def test_falls_back_to_a_sealed_copy_when_no_readonly_view_can_be_made(monkeypatch):
    def refused(path: str = "/proc/self/exe") -> int:
        raise OSError(errno.EPERM, "open_tree: Operation not permitted")

    monkeypatch.setattr(spawn, "readonly_interpreter", refused)
    fd = spawn.protected_interpreter()
    try:
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:ketch-runc-init")
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        assert os.fstat(fd).st_size == os.stat("/proc/self/exe").st_size
        try:
            os.pwrite(fd, b"x", 0)   # the memfd is ours alone: writing to it is harmless
        except OSError as exc:
            assert exc.errno == errno.EPERM
        else:
            raise AssertionError("the sealed copy took a write")
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)
