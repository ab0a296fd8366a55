"""The newc writer: checked by parsing it back and by busybox's own cpio."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest

from ketch.vm.cpio import CpioWriter, archive


def _parse(data: bytes) -> list[tuple[str, int, bytes]]:
    entries, pos = [], 0
    while True:
        assert pos % 4 == 0
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos:pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            assert pos == len(data)
            return entries
        entries.append((name, mode, body))


def test_cpio_entries_round_trip_aligned():
    data = archive([("dir", "etc"), ("file", "etc/a", b"abc", 0o600),
                    ("symlink", "etc/link", "a"), ("file", "/odd-name-len", b"12345")])
    assert len(data) % 4 == 0
    got = _parse(data)
    assert [(n, oct(m), b) for n, m, b in got] == [
        ("etc", oct(0o40755), b""), ("etc/a", oct(0o100600), b"abc"),
        ("etc/link", oct(0o120777), b"a"), ("odd-name-len", oct(0o100644), b"12345")]


def test_cpio_device_node():
    buf = io.BytesIO()
    w = CpioWriter(buf)
    w.device("dev/console", True, 5, 1)
    w.close()
    header = buf.getvalue()
    assert int(header[6 + 8:6 + 16], 16) == 0o20600          # S_IFCHR | 0600
    assert int(header[6 + 9 * 8:6 + 10 * 8], 16) == 5         # rdevmajor
    assert int(header[6 + 10 * 8:6 + 11 * 8], 16) == 1        # rdevminor


def test_cpio_extracts_with_busybox(tmp_path):
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("needs busybox for its cpio applet")
    data = archive([("dir", "d"), ("file", "d/f", b"hello\n", 0o755), ("symlink", "d/l", "f")])
    subprocess.run([busybox, "cpio", "-i", "-d"], input=data, cwd=tmp_path, check=True,
                   capture_output=True)
    assert (tmp_path / "d" / "f").read_bytes() == b"hello\n"
    assert (tmp_path / "d" / "f").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "l").readlink().name == "f"
