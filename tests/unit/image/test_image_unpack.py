"""Layer unpacking against hostile tars: nothing outside the snapshot may change.

Each attack builds a tar in memory, unpacks it into `root`, and then checks
that `outside` (a sibling directory holding a secret, which the attack
aims at) is byte-for-byte, mode and mtime unchanged; the layer is either
refused with a DataError naming the entry, or contained inside `root`.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from ketch.errors import DataError
from ketch.image.unpack import unpack


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mode = 0o755 if kind in ("dir", "sym") else 0o644
            data = b""
            if kind == "file":
                data = e[2] if len(e) > 2 else b"x"
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, e[2]
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, e[2]
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, e[2], e[3]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            for k, v in (e[3] if kind == "file" and len(e) > 3 else {}).items():
                setattr(ti, k, v) if k != "pax" else ti.pax_headers.update(v)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _state(path):
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            body = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else os.path.islink(p) \
                and os.readlink(p)
            out[p] = (st.st_mode, st.st_uid, st.st_nlink, st.st_mtime_ns, body)
    return out


@pytest.fixture(autouse=True, params=["openat2", "walk"])
def resolution(request, monkeypatch):
    """Run every case with the kernel's RESOLVE_IN_ROOT and with the fallback walk."""
    if request.param == "walk":
        def no_openat2(*_a, **_k):
            raise OSError(errno.ENOSYS, "Function not implemented")
        monkeypatch.setattr("ketch.image.resolve.openat2", no_openat2)
    return request.param


@pytest.fixture
def arena(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("keep me")
    (outside / "dir").mkdir()
    (outside / "dir" / "inner").write_text("inner")
    before = _state(tmp_path / "outside")
    yield root, outside
    assert _state(tmp_path / "outside") == before, "the layer changed a file outside the root"
    assert sorted(os.listdir(tmp_path)) == ["outside", "root"], "something appeared beside root"


def _apply(root, entries, mode="delete"):
    return unpack(io.BytesIO(_tar(entries)), str(root), mode)


def _attack(root, entries, mode="delete"):
    """Apply, accepting a refusal; the arena fixture checks containment."""
    try:
        _apply(root, entries, mode)
    except DataError as exc:
        return str(exc)
    return None


def test_absolute_names_are_contained(arena):
    root, outside = arena
    _apply(root, [(f"{outside}/secret", "file", b"pwned"), ("/etc/x", "file")])
    assert (root / str(outside).lstrip("/") / "secret").read_bytes() == b"pwned"
    assert (root / "etc" / "x").is_file()


@pytest.mark.parametrize("name", ["../outside/secret", "a/../../outside/secret", "./../x"])
def test_dotdot_is_refused_naming_the_entry(arena, name):
    root, _ = arena
    msg = _attack(root, [(name, "file", b"pwned")])
    assert msg and name in msg and ".." in msg


def test_symlinked_parent_is_contained(arena):
    root, outside = arena
    _attack(root, [("link", "sym", str(outside)), ("link/secret", "file", b"pwned"),
                   ("rel", "sym", "../../../../../../" + str(outside)),
                   ("rel/secret", "file", b"pwned")])
    # Whatever was created lives under root.
    for dirpath, _dirs, _files in os.walk(root):
        assert dirpath.startswith(str(root))


def test_symlink_chain_is_contained(arena):
    root, outside = arena
    _attack(root, [("a", "sym", "b"), ("b", "sym", "c"), ("c", "sym", "/.." + str(outside)),
                   ("a/secret", "file", b"pwned"), ("a/dir/inner", "file", b"pwned")])


def test_symlink_to_dir_inside_is_followed_in_root(arena, resolution):
    root, _ = arena
    if resolution == "walk":
        # Without openat2 a symlinked parent is refused rather than resolved.
        assert _attack(root, [("usr", "dir"), ("lib", "sym", "usr"), ("lib/x", "file")])
        return
    _apply(root, [("usr", "dir"), ("usr/lib", "dir"), ("lib", "sym", "/usr/lib"),
                  ("lib/x.so", "file", b"lib")])
    assert (root / "usr" / "lib" / "x.so").read_bytes() == b"lib"
    assert os.readlink(root / "lib") == "/usr/lib"


def test_hardlink_to_outside_is_refused(arena):
    root, outside = arena
    for link in (f"{outside}/secret", "../outside/secret", "/etc/passwd"):
        msg = _attack(root, [("hl", "link", link)])
        assert msg and "hl" in msg
    nlink = os.stat("/etc/passwd").st_nlink
    _attack(root, [("s", "sym", str(outside)), ("hl", "link", "s/secret")])
    assert os.stat("/etc/passwd").st_nlink == nlink


def test_hardlink_to_symlink_links_the_symlink(arena):
    root, outside = arena
    _apply(root, [("s", "sym", f"{outside}/secret"), ("hl", "link", "s")])
    assert os.path.islink(root / "hl") and os.readlink(root / "hl") == f"{outside}/secret"


def test_symlink_replaced_by_file_does_not_write_through(arena):
    root, outside = arena
    _apply(root, [("f", "sym", f"{outside}/secret"), ("f", "file", b"new")])
    assert not os.path.islink(root / "f") and (root / "f").read_bytes() == b"new"


def test_dir_replaced_by_symlink_then_written_into(arena):
    root, outside = arena
    _attack(root, [("d", "dir"), ("d", "sym", str(outside)), ("d/secret", "file", b"pwned")])


@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_whiteouts_cannot_reach_outside(arena, mode):
    if mode == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay whiteouts are device nodes: needs root")
    root, outside = arena
    _attack(root, [("l", "sym", str(outside)), ("l/.wh.secret", "file"),
                   ("l/dir/.wh..wh..opq", "file"), ("l2", "sym", "../outside"),
                   ("l2/.wh.dir", "file")], mode)
    assert _attack(root, [(".wh..", "file")], mode)


def test_whiteouts_delete_and_opaque(tmp_path):
    root = tmp_path / "r"
    _apply(root.mkdir() or root, [("a", "dir"), ("a/old", "file"), ("a/keep", "dir"),
                                  ("c", "file"), ("d", "dir"), ("d/x", "file")])
    _apply(root, [("a", "dir"), ("a/new", "file"), ("a/.wh..wh..opq", "file"),
                  (".wh.c", "file"), ("d/.wh.x", "file")])
    assert sorted(os.listdir(root / "a")) == ["new"]
    assert not (root / "c").exists() and os.listdir(root / "d") == []


def test_overlay_whiteouts_become_overlay_format(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("overlay whiteouts are device nodes and trusted xattrs: needs root")
    _apply(tmp_path, [("a", "dir"), ("a/.wh..wh..opq", "file"), (".wh.gone", "file")],
           "overlay")
    st = os.lstat(tmp_path / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "a", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "a" / ".wh..wh..opq").exists()


def test_tar_cannot_set_overlay_xattrs(tmp_path):
    pax = {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.k": "v"}
    _apply(tmp_path, [("f", "file", b"d", {"pax": pax})])
    names = os.listxattr(tmp_path / "f")
    assert "trusted.overlay.opaque" not in names
    assert os.getxattr(tmp_path / "f", "user.k") == b"v"


def test_metadata_modes_owners_hardlinks_sparse(tmp_path):
    hole = b"\0" * (3 << 20) + b"end"
    _apply(tmp_path, [("bin", "dir"),
                      ("bin/su", "file", b"su", {"mode": 0o4755, "uid": 1234, "gid": 55,
                                                  "mtime": 1_000_000}),
                      ("bin/su2", "link", "bin/su"), ("big", "file", hole),
                      ("p", "fifo")])
    st = os.stat(tmp_path / "bin" / "su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == 1_000_000
    assert st.st_nlink == 2 and os.stat(tmp_path / "bin" / "su2").st_ino == st.st_ino
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 55)
    big = os.stat(tmp_path / "big")
    assert big.st_size == len(hole) and big.st_blocks * 512 < len(hole) // 2
    assert (tmp_path / "big").read_bytes() == hole
    assert stat.S_ISFIFO(os.lstat(tmp_path / "p").st_mode)


def test_device_nodes_only_as_root(tmp_path):
    _apply(tmp_path, [("dev", "dir"), ("dev/null", "chr", 1, 3)])
    if os.geteuid() == 0:
        assert os.lstat(tmp_path / "dev" / "null").st_rdev == os.makedev(1, 3)
    else:
        assert not (tmp_path / "dev" / "null").exists()


@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
def test_compression_and_diff_id(tmp_path, compress):
    raw = _tar([("hello", "file", b"world")])
    blob = {"plain": lambda b: b, "gzip": gzip.compress,
            "zstd": lambda b: __import__("zstandard").ZstdCompressor().compress(b)}[compress](raw)
    diff_id, size = unpack(io.BytesIO(blob), str(tmp_path))
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest() and size == len(raw)
    assert (tmp_path / "hello").read_bytes() == b"world"


@pytest.mark.parametrize("blob", [b"\x1f\x8b\x08\x00garbage", _tar([("a", "file", b"x" * 5000)])[:1200]])
def test_corrupt_layers_fail_cleanly(tmp_path, blob):
    with pytest.raises(DataError):
        unpack(io.BytesIO(blob), str(tmp_path))


def test_symlink_loop_is_refused_not_followed(arena):
    root, _ = arena
    msg = _attack(root, [("a", "sym", "b"), ("b", "sym", "a"), ("a/x", "file", b"pwned")])
    assert msg and "a/x" in msg


def test_earlier_layer_symlink_cannot_redirect_a_later_layer(arena):
    root, outside = arena
    _apply(root, [("etc", "sym", str(outside))])           # layer 1 plants a link
    _attack(root, [("etc/secret", "file", b"pwned"),         # layer 2 writes through it
                   ("h", "link", "etc/secret"), ("etc/.wh.dir", "file")])


def test_directory_deleted_later_in_the_layer_stays_deleted(tmp_path):
    _apply(tmp_path, [("a", "dir"), ("a/b", "dir"), ("a/b/f", "file"), (".wh.a", "file")])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mode", [0o640, 0o777, 0o000, 0o2755, 0o1644, 0o400])
def test_file_modes_are_exact_whatever_the_umask(tmp_path, mode):
    _apply(tmp_path, [("f", "file", b"data", {"mode": mode})])
    assert stat.S_IMODE(os.lstat(tmp_path / "f").st_mode) == mode
    assert (tmp_path / "f").read_bytes() == b"data" or os.geteuid() != 0
