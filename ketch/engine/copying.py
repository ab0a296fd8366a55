"""`ketch cp`: files between the host and a container, running or not, and tar streams.

A container path is resolved the way the container sees it: a bind or
volume mount that covers it wins, otherwise the rootfs (mounted for the
duration when the container is not running). Symlinks inside are resolved
within the container's root, so an image cannot point a copy at the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tarfile
from typing import BinaryIO

from ketch.engine import rootfs, usermap, volumes
from ketch.engine.containers import Container
from ketch.errors import InvalidArgument, NotFound


@contextlib.contextmanager
def mounted_root(conn: sqlite3.Connection, c: Container):
    """The host path of the container's root filesystem, mounted if need be."""
    from ketch.engine import images
    from ketch.engine.lifecycle import bundle_dir
    target = str(bundle_dir(c.id) / "rootfs")
    if rootfs.is_mounted(target):
        yield target
        return
    try:
        mounts = images.rootfs_mounts(conn, c.id)
    except (AttributeError, NotFound):
        mounts = c.rootfs
    rootfs.mount(mounts, target)
    try:
        yield target
    finally:
        rootfs.unmount(target)


def host_path(root: str, c: Container, path: str) -> str:
    """Where container path `path` lives on the host (mounts first, then the rootfs)."""
    path = os.path.normpath("/" + path)
    best = None
    for m in c.options.mounts:
        if m.type == "tmpfs":
            continue
        if path == m.target or path.startswith(m.target.rstrip("/") + "/"):
            if best is None or len(m.target) > len(best.target):
                best = m
    if best is not None:
        base = str(volumes.data_dir(best.source)) if best.type == "volume" else best.source
        return usermap.in_root(base, os.path.relpath(path, best.target))
    return usermap.in_root(root, path)


def copy_out(src: str, dst: str) -> None:
    """Docker's rules: a dir lands inside an existing dst dir, or becomes dst."""
    if not os.path.lexists(src):
        raise NotFound(f"Could not find the file {src} in container")
    if os.path.isdir(dst):
        dst = os.path.join(dst, os.path.basename(src.rstrip("/")) or "root")
    elif dst.endswith("/"):
        raise NotFound(f"destination directory {dst} does not exist")
    if os.path.isdir(src) and not os.path.islink(src):
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)


def tar_out(src: str, out: BinaryIO) -> None:
    if not os.path.lexists(src):
        raise NotFound(f"Could not find the file {src} in container")
    with tarfile.open(fileobj=out, mode="w|") as t:
        t.add(src, arcname=os.path.basename(src.rstrip("/")) or ".")


def tar_in(stream: BinaryIO, dst: str) -> None:
    if not os.path.isdir(dst):
        raise InvalidArgument(f"extraction point is not a directory: {dst}")
    with tarfile.open(fileobj=stream, mode="r|*") as t:
        t.extractall(dst, filter="tar")   # no absolute names, no escapes, no devices


def copy(conn: sqlite3.Connection, src: tuple[Container | None, str],
         dst: tuple[Container | None, str], stdin: BinaryIO, stdout: BinaryIO) -> None:
    (sc, sp), (dc, dp) = src, dst
    if sc is not None and dc is not None:
        raise InvalidArgument("copying between containers is not supported")
    if sc is None and dc is None:
        raise InvalidArgument("must specify at least one container source")
    c = sc or dc
    with mounted_root(conn, c) as root:
        if sc is not None:
            hp = host_path(root, sc, sp)
            if not os.path.lexists(hp):   # name the path as the container sees it
                raise NotFound(f"Could not find the file {sp} in container {sc.name}")
            tar_out(hp, stdout) if dp == "-" else copy_out(hp, dp)
            return
        hp = host_path(root, dc, dp)
        if sp == "-":
            tar_in(stdin, hp)
            return
        if not os.path.lexists(sp):
            raise NotFound(f"stat {sp}: no such file or directory")
        if os.path.isdir(hp):
            hp = os.path.join(hp, os.path.basename(sp.rstrip("/")))
        elif not os.path.isdir(os.path.dirname(hp)):
            raise NotFound(f"Could not find the file {os.path.dirname(dp)} in container "
                           f"{c.name}")
        if os.path.isdir(sp):
            shutil.copytree(sp, hp, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(sp, hp, follow_symlinks=False)
