"""Finding the ext4 filesystem in a VM disk, and the `ketch vm` flag parsers."""

from __future__ import annotations

import struct

import pytest

from ketch.cli.vm import _hostfwd, _size
from ketch.errors import InvalidArgument
from ketch.vm import disk


def _ext_at(buf: bytearray, offset: int) -> None:
    struct.pack_into("<H", buf, offset + 1024 + 56, disk.EXT_MAGIC)


def test_whole_disk_filesystem(tmp_path):
    buf = bytearray(8192)
    _ext_at(buf, 0)
    (tmp_path / "d").write_bytes(buf)
    assert disk.find_ext4(tmp_path / "d") == 0


def test_mbr_partition(tmp_path):
    buf = bytearray(4 << 20)
    struct.pack_into("<B3xBxxxII", buf, 0x1BE, 0, 0x83, 2048, 4096)
    buf[0x1FE:0x200] = b"\x55\xaa"
    _ext_at(buf, 2048 * 512)
    (tmp_path / "d").write_bytes(buf)
    assert disk.find_ext4(tmp_path / "d") == 1 << 20


def test_gpt_partition_picks_the_largest_ext(tmp_path):
    buf = bytearray(8 << 20)
    buf[512:520] = b"EFI PART"
    struct.pack_into("<QII", buf, 512 + 72, 2, 2, 128)
    for i, (first, last) in enumerate([(2048, 4095), (4096, 12287)]):
        entry = 1024 + i * 128
        buf[entry:entry + 16] = b"\x01" * 16
        struct.pack_into("<QQ", buf, entry + 32, first, last)
        _ext_at(buf, first * 512)
    (tmp_path / "d").write_bytes(buf)
    assert disk.find_ext4(tmp_path / "d") == 4096 * 512


def test_no_filesystem(tmp_path):
    (tmp_path / "d").write_bytes(bytes(8192))
    with pytest.raises(InvalidArgument, match="no ext2/3/4 filesystem"):
        disk.find_ext4(tmp_path / "d")


def test_flag_parsers():
    assert _size("4g", "disk size") == 4 << 30
    assert _size("512m", "memory") == 512 << 20
    assert _size("1.5GiB", "memory") == 3 << 29
    with pytest.raises(InvalidArgument, match="invalid memory 'lots'"):
        _size("lots", "memory")
    assert _hostfwd("8080:80") == "tcp::8080-:80"
    assert _hostfwd("127.0.0.1:53:53/udp") == "udp:127.0.0.1:53-:53"
    with pytest.raises(InvalidArgument):
        _hostfwd("80")
