"""The engine's image facade: what front ends and the container engine call.

Functions take the engine's database connection; the store lives under
paths.root() (content/, snapshots/). Contract with the container engine:

    resolve(conn, ref_or_id) -> ImageRecord            NotFound "No such image: x"
    prepare_rootfs(conn, image, container_id) -> mounts (runtime mounts them)
    remove_rootfs(conn, container_id)
    rootfs_mounts(conn, container_id)                  mounts of an existing rootfs
    rootfs_diff / commit / export_rootfs               `ketch diff` / `commit` / `export`
    disk_usage(conn) / check(conn)                     for `system df` / `system check`
    snapshotter_name(conn)                             for `ketch info`
    lease(conn)                                        hold while writing blobs no image names yet

and for the image commands: list_rows, inspect, history, tag, remove, prune,
save, load, import_, bootstrap.
"""

from __future__ import annotations

import sqlite3

from ketch import paths
from ketch.engine import db
from ketch.errors import InvalidArgument
from ketch.image.schema import SCHEMA, ImageRecord
from ketch.image.store import ImageStore

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
    """Every image, names included, layers not (three queries)."""
    return store(conn).summaries()


def list_rows(conn: sqlite3.Connection, show_all: bool = False,
              filters: list[str] = ()) -> list[dict]:
    """`ketch images` rows (raw: ID full, Created epoch, Size bytes)."""
    from ketch.image import views

    return views.rows(store(conn), show_all, views.parse_filters(list(filters)))


def inspect(conn: sqlite3.Connection, ref_or_id: str) -> dict:
    from ketch.image import views

    s = store(conn)
    return views.docker_inspect(s, s.resolve(ref_or_id))


def history(conn: sqlite3.Connection, ref_or_id: str) -> list[dict]:
    from ketch.image import views

    return views.history(resolve(conn, ref_or_id))


def tag(conn: sqlite3.Connection, source: str, target: str) -> None:
    s = store(conn)
    s.tag(s.resolve(source).id, target)


def remove(conn: sqlite3.Connection, names: list[str], force: bool = False) -> list[dict]:
    """`ketch rmi`: Docker's Untagged/Deleted report lines."""
    from ketch.image import gc

    s = store(conn)
    out: list[dict] = []
    for name in names:
        out += gc.remove_image(s, name, force)
    return out


def prune(conn: sqlite3.Connection, all_images: bool = False) -> tuple[list[dict], int]:
    from ketch.image import gc

    return gc.prune(store(conn), all_images)


def disk_usage(conn: sqlite3.Connection) -> dict:
    """For `system df`: {"Snapshotter", "LayersSize", "BlobsSize", "Images": [{Id, RepoTags,
    Created, Size, SharedSize, UniqueSize, Containers}], "Containers": [{Id, ImageID, SizeRw,
    SizeRootFs}]} (bytes)."""
    from ketch.image import gc

    return gc.disk_usage(store(conn))


def check(conn: sqlite3.Connection, verify_blobs: bool = True) -> list[str]:
    """For `system check`: one line per problem; [] means consistent."""
    from ketch.image import gc

    return gc.check(store(conn), verify_blobs)


def lease(conn: sqlite3.Connection):
    """Context manager: hold while publishing blobs not yet referenced by an image."""
    from ketch.image import gc

    return gc.lease(store(conn))


def save(conn: sqlite3.Connection, names: list[str], out) -> None:
    """Write images as one tar (OCI layout + docker-archive) to a binary stream."""
    from ketch.image import archive

    archive.check_names(names)
    archive.save(store(conn), names, out)


def load(conn: sqlite3.Connection, path, progress=None) -> list[str]:
    """Load a docker-archive or OCI layout (tar or directory); Docker's report lines."""
    from pathlib import Path

    from ketch.image import archive

    return archive.load(store(conn), Path(path), progress)


def import_(conn: sqlite3.Connection, stream, source: str, name: str | None = None,
            changes: list[str] = (), message: str = "",
            platform: str | None = None) -> ImageRecord:
    """`ketch import`: a rootfs tar (any compression) becomes a one-layer image."""
    from ketch.image import importer

    return importer.import_tar(store(conn), stream, source, name, list(changes), message,
                               platform)


def rootfs_diff(conn: sqlite3.Connection, container_id: str) -> list[dict]:
    """`docker diff`: [{"Kind": 0 modified | 1 added | 2 deleted, "Path": "/x"}]."""
    from ketch.image import changes

    return [{"Kind": k, "Path": p} for k, p in changes.changes(store(conn), container_id)]


def commit(conn: sqlite3.Connection, container_id: str, image: ImageRecord,
           name: str | None = None, config: dict | None = None, changes: list[str] = (),
           message: str = "", author: str = "") -> ImageRecord:
    """`docker commit`: `image` (the container's) + the container's changes as a layer.

    `config` is the inner image config to record (the container's Cmd, Env ...);
    default: the image's. `changes` are Dockerfile-style --change lines."""
    from ketch.image import changes as ch

    inner = config if config is not None else (image.config.get("config") or {})
    return ch.commit(store(conn), container_id, image, name, inner, list(changes), message,
                     author)


def export_rootfs(conn: sqlite3.Connection, container_id: str, out) -> None:
    """`docker export`: the container's merged filesystem as a tar, to a binary stream."""
    from ketch.image import changes

    changes.export(store(conn), container_id, out)
