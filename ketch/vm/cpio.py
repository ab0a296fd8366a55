"""A writer for the newc cpio format, the one the Linux kernel unpacks as initramfs.

No cpio binary is needed: the base initramfs and the small per-run archive
are both written here. Entries are written in the order given; the kernel
needs a directory to exist before anything inside it.
"""

from __future__ import annotations

import io
import stat

_TRAILER = "TRAILER!!!"


class CpioWriter:
    """Write newc entries to a binary stream; `close()` writes the trailer."""

    def __init__(self, out: io.BufferedIOBase | io.BytesIO):
        self._out = out
        self._ino = 1
        self._written = 0

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._written += len(data)

    def _pad(self) -> None:
        # Both the header+name and the file data are padded to 4 bytes.
        rem = self._written % 4
        if rem:
            self._write(b"\0" * (4 - rem))

    def _entry(self, name: str, mode: int, data: bytes = b"", *, uid: int = 0,
               gid: int = 0, mtime: int = 0, rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        encoded = name.lstrip("/").encode() + b"\0"
        if encoded == b"\0":
            encoded = b".\0"
        fields = [self._ino, mode, uid, gid, nlink, mtime, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._write(header + encoded)
        self._pad()
        if data:
            self._write(data)
            self._pad()

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def device(self, name: str, char: bool, major: int, minor: int, mode: int = 0o600) -> None:
        kind = stat.S_IFCHR if char else stat.S_IFBLK
        self._entry(name, kind | mode, rdev=(major, minor))

    def close(self) -> None:
        self._entry(_TRAILER, 0, nlink=1)
        self._pad()


def archive(entries: list[tuple]) -> bytes:
    """Build a whole archive in memory from ("dir"|"file"|"symlink", name, ...) tuples."""
    buf = io.BytesIO()
    w = CpioWriter(buf)
    for kind, name, *rest in entries:
        getattr(w, {"dir": "directory", "file": "file", "symlink": "symlink"}[kind])(name, *rest)
    w.close()
    return buf.getvalue()
