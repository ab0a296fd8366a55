"""A container's changes to its image: `diff`, `commit` and `export`.

Everything is read from the snapshot directories, never through a mount:
with overlay the container's upper directory *is* its diff (0/0 character
devices are deletions, the opaque xattr hides lower contents), and the
merged view for `export` is computed by walking upper then lowers. With the
copy snapshotter the container tree is compared with its parent's tree.
Lower trees are looked at without following symlinks, so a link planted by
an image can never make ketch read the host.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ketch.image.store import ImageRecord, ImageStore

MODIFIED, ADDED, DELETED = 0, 1, 2
_OPAQUE = "trusted.overlay.opaque"


def _walk(base: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry below base, parents first, no symlink following."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            names = sorted(os.listdir(base / rel if rel else base), reverse=True)
        except OSError:
            continue
        for name in names:
            child = f"{rel}/{name}" if rel else name
            st = os.lstat(base / child)
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)


def _lstat_in(base: Path, rel: str) -> os.stat_result | None:
    """lstat of base/rel, or None if absent or reached through a symlink."""
    cur = base
    parts = rel.split("/")
    for i, part in enumerate(parts):
        cur = cur / part
        try:
            st = os.lstat(cur)
        except OSError:
            return None
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return None
    return st


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _layout(store: ImageStore, container_id: str) -> tuple[Path, list[Path]]:
    row = store._active(container_id)
    lowers = [store.snap.fs(k) for k in store.parents_of_key(row["parent"])]
    return store.snap.fs(container_id), lowers


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    keys = ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_rdev")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def changes(store: ImageStore, container_id: str) -> list[tuple[int, str]]:
    """(kind, "/path") like `docker diff`: 0 modified, 1 added, 2 deleted; sorted by path."""
    upper, lowers = _layout(store, container_id)
    out = []
    if store.snap.whiteouts == "overlay":
        for rel, st in _walk(upper):
            if _is_whiteout(st):
                out.append((DELETED, "/" + rel))
                continue
            seen = any(_lstat_in(low, rel) is not None for low in lowers)
            out.append((MODIFIED if seen else ADDED, "/" + rel))
    else:
        parent = lowers[0] if lowers else None
        for rel, st in _walk(upper):
            old = _lstat_in(parent, rel) if parent else None
            if old is None:
                out.append((ADDED, "/" + rel))
            elif not _same(old, st) or stat.S_ISDIR(st.st_mode) != stat.S_ISDIR(old.st_mode):
                out.append((MODIFIED, "/" + rel))
        if parent:
            for rel, _st in _walk(parent):
                if _lstat_in(upper, rel) is None and _lstat_in(upper, rel.rpartition("/")[0] or
                                                               ".") is not None:
                    out.append((DELETED, "/" + rel))
    return sorted(out, key=lambda c: c[1])


def write_layer(store: ImageStore, container_id: str, out: IO[bytes]) -> None:
    """The container's changes as an OCI layer tar (whiteouts as .wh. files)."""
    upper, lowers = _layout(store, container_id)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        if store.snap.whiteouts == "overlay":
            for rel, st in _walk(upper):
                if _is_whiteout(st):
                    head, _, name = rel.rpartition("/")
                    _add_marker(tf, f"{head}/.wh.{name}" if head else f".wh.{name}")
                    continue
                _add(tf, upper, rel)
                if stat.S_ISDIR(st.st_mode) and _opaque(upper / rel):
                    _add_marker(tf, f"{rel}/.wh..wh..opq")
            return
        kinds = dict((p[1:], k) for k, p in changes(store, container_id))
        for rel in sorted(kinds):
            if kinds[rel] == DELETED:
                head, _, name = rel.rpartition("/")
                _add_marker(tf, f"{head}/.wh.{name}" if head else f".wh.{name}")
            else:
                _add(tf, upper, rel)


def _add(tf: tarfile.TarFile, base: Path, rel: str) -> None:
    ti = tf.gettarinfo(str(base / rel), arcname=rel)
    if ti is None:
        return  # a socket: tar cannot hold it
    for name in _xattrs(base / rel):
        ti.pax_headers[f"SCHILY.xattr.{name}"] = os.getxattr(
            base / rel, name, follow_symlinks=False).decode("utf-8", "surrogateescape")
    if ti.isreg():
        with open(base / rel, "rb") as f:
            tf.addfile(ti, f)
    else:
        tf.addfile(ti)


def _xattrs(path: Path) -> list[str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    return [n for n in names if n.startswith(("user.", "security.capability"))]


def _add_marker(tf: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.mode = 0o600
    tf.addfile(ti)


def export(store: ImageStore, container_id: str, out: IO[bytes]) -> None:
    """The container's whole filesystem (image + changes) as one flat tar."""
    upper, lowers = _layout(store, container_id)
    layers = [upper] + (lowers if store.snap.whiteouts == "overlay" else [])
    seen: set[str] = set()
    blocked: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for layer in layers:
            hide: set[str] = set()
            for rel, st in _walk(layer):
                if _hidden(rel, blocked):
                    continue
                if _is_whiteout(st):
                    hide.add(rel)
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if not is_dir or _opaque(layer / rel):
                    hide.add(rel)  # lower layers cannot show through a file or opaque dir
                if rel in seen:
                    continue
                seen.add(rel)
                _add(tf, layer, rel)
            blocked |= hide


def _hidden(rel: str, blocked: set[str]) -> bool:
    if rel in blocked:
        return True
    parts = rel.split("/")
    return any("/".join(parts[:i]) in blocked for i in range(1, len(parts)))


def commit(store: ImageStore, container_id: str, base: ImageRecord, name: str | None,
           inner: dict, changes_: list[str], message: str = "", author: str = "") -> ImageRecord:
    """A new image: `base` plus the container's changes as one gzip layer."""
    import tempfile

    from ketch.image import gc, importer

    inner = importer.apply_changes(dict(inner), changes_)
    with gc.lease(store), tempfile.TemporaryFile(dir=store.root) as tmp:
        with gzip.GzipFile(fileobj=tmp, mode="wb", compresslevel=1, mtime=0) as gz:
            write_layer(store, container_id, gz)
        tmp.seek(0)
        layer = importer.store_stream(store, tmp, f"commit-{container_id}")
        extra = {"author": author} if author else {}
        return importer.create_image(store, base, layer, inner, [name] if name else [],
                                     {"created_by": "", "comment": message}, extra)
