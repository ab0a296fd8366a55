"""The engine's image facade: what front ends and the container engine call.

Functions take the engine's database connection; the store lives under
paths.root() (content/, snapshots/). Contract with the container engine:

    resolve(conn, ref_or_id) -> ImageRecord            NotFound "No such image: x"
    prepare_rootfs(conn, image, container_id) -> mounts (runtime mounts them)
    remove_rootfs(conn, container_id)
    rootfs_diff(conn, container_id) / commit(conn, container_id, ...)
    disk_usage(conn) / check(conn)                     for `system df` / `system check`
"""

from __future__ import annotations

import sqlite3

from ketch import paths
from ketch.engine import db
from ketch.errors import InvalidArgument
from ketch.image.store import SCHEMA, ImageRecord, ImageStore

__all__ = ["ImageRecord", "resolve", "prepare_rootfs", "remove_rootfs", "store"]


def store(conn: sqlite3.Connection) -> ImageStore:
    db.ensure_schema(conn, "images", SCHEMA)
    return ImageStore(conn, paths.root())


def resolve(conn: sqlite3.Connection, ref_or_id: str) -> ImageRecord:
    return store(conn).resolve(ref_or_id)


def prepare_rootfs(conn: sqlite3.Connection, image: ImageRecord, container_id: str) -> list[dict]:
    return store(conn).prepare_rootfs(image, container_id)


def rootfs_mounts(conn: sqlite3.Connection, container_id: str) -> list[dict]:
    return store(conn).rootfs_mounts(container_id)


def remove_rootfs(conn: sqlite3.Connection, container_id: str) -> None:
    store(conn).remove_rootfs(container_id)


def snapshotter_name(conn: sqlite3.Connection) -> str:
    """'overlay' or 'copy': for `ketch info`."""
    return store(conn).snap.name


def bootstrap(conn: sqlite3.Connection, what: str, include: list[str] = (),
              name: str | None = None, mirror: str | None = None) -> ImageRecord:
    """`ketch bootstrap busybox` / `ketch bootstrap debian:<suite>`."""
    from ketch.image import bootstrap as boot

    s = store(conn)
    base, _, suite = what.partition(":")
    if base == "busybox":
        if include:
            raise InvalidArgument("bootstrap busybox: --include applies to debian only")
        return boot.bootstrap_busybox(s, name or "busybox:latest")
    if base == "debian":
        return boot.bootstrap_debian(s, suite or "bookworm", name, list(include), mirror)
    raise InvalidArgument(f"bootstrap: unknown base {what!r} (want busybox or debian:<suite>)")


def list_images(conn: sqlite3.Connection) -> list[ImageRecord]:
    return store(conn).all()
