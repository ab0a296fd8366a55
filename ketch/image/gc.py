"""Garbage collection, removal, disk usage and consistency checks of the image store.

Reachability, not counters: a layer snapshot lives while an image's chain
or a container snapshot's ancestry contains it; a blob lives while an
image's manifest, config or layers name it. Writers that publish blobs
before registering an image (pulls, loads) hold `lease()` so a concurrent
GC never takes their blobs.
"""

from __future__ import annotations

import fcntl

from ketch.errors import Conflict
from ketch.image.store import ImageStore
from ketch.oci import digest as _digest
from ketch.oci import image_spec as spec

TYPE_CHECKING = False  # typing costs `ketch rmi` ~4 ms
if TYPE_CHECKING:
    from typing import Any

INGEST_MAX_AGE = 24 * 3600


def _flock(store: ImageStore, mode: int):
    return store.lock(mode)


def lease(store: ImageStore):
    """Hold while writing blobs that no image references yet (shared lock)."""
    return store.lock(fcntl.LOCK_SH)


def live_snapshots(store: ImageStore) -> set[str]:
    c = store.conn
    keep = {r[0][7:] for r in c.execute("SELECT DISTINCT chain_id FROM image_layers")}
    for (key,) in c.execute("SELECT key FROM snapshots WHERE kind='active'"):
        keep.add(key)
        row = c.execute("SELECT parent FROM snapshots WHERE key=?", (key,)).fetchone()
        keep.update(store.parents_of_key(row[0]) if row and row[0] else [])
    return keep


def live_blobs(store: ImageStore) -> set[str]:
    c = store.conn
    keep = {r[0] for r in c.execute("SELECT manifest_digest FROM images")}
    keep |= {r[0] for r in c.execute("SELECT id FROM images")}
    keep |= {r[0] for r in c.execute("SELECT blob FROM image_layers")}
    # A repo digest may name an index (pulled by a tag that named one): keep it.
    keep |= {r[0] for r in c.execute("SELECT digest FROM repo_digests")}
    return keep


def collect(store: ImageStore) -> int:
    """Remove unreferenced snapshots and blobs; returns bytes reclaimed."""
    freed = 0
    with _flock(store, fcntl.LOCK_EX):
        keep = live_snapshots(store)
        for (key,) in store.conn.execute(
                "SELECT key FROM snapshots WHERE kind='layer'").fetchall():
            if key not in keep:
                freed += _drop_snapshot(store, key)
        freed += _drop_orphan_rootfs(store)
        known = {r[0] for r in store.conn.execute("SELECT key FROM snapshots")}
        for key in store.snap.keys():
            if key not in known:   # left by a crash between unpack and record
                freed += _drop_snapshot(store, key)
        store.snap.sweep_unpacks()
        blobs = live_blobs(store)
        for dig, size in list(store.content.walk()):
            if dig not in blobs:
                store.content.delete(dig)
                freed += size
        # A killed pull leaves its ingest for the next pull to resume; a day
        # later nobody is coming back for it.
        freed += store.content.expire_ingests(INGEST_MAX_AGE)
    return freed


def orphan_rootfs(store: ImageStore) -> list[str]:
    """Container snapshots whose container the engine no longer knows."""
    c = store.conn
    if not c.execute("SELECT 1 FROM sqlite_master WHERE type='table' "
                     "AND name='containers'").fetchone():
        return []
    return [r[0] for r in c.execute(
        "SELECT key FROM snapshots WHERE kind='active' "
        "AND key NOT IN (SELECT id FROM containers)")]


def _drop_orphan_rootfs(store: ImageStore) -> int:
    # Left by a crash between removing a container and its rootfs. One still
    # mounted somewhere is left alone: deleting under a mount would be worse.
    try:
        with open("/proc/self/mountinfo") as f:
            mounted = f.read()
    except OSError:
        return 0
    freed = 0
    for key in orphan_rootfs(store):
        if str(store.snap.dir(key)) not in mounted:
            freed += _drop_snapshot(store, key)
    return freed


def _drop_snapshot(store: ImageStore, key: str) -> int:
    try:
        size = store.snap.usage(key)
    except OSError:
        size = 0
    store.snap.remove(key)
    store.conn.execute("DELETE FROM snapshots WHERE key=?", (key,))
    return size


def remove_image(store: ImageStore, name: str, force: bool = False,
                 prune: bool = True) -> list[dict[str, str]]:
    """`docker rmi`: drop one reference; delete the image when none is left.

    By tag or name@digest: that reference. By ID: every name (refused without
    force when there are several). Refused when a container uses the image and
    its last reference would go, unless forced. Returns Docker's report lines
    as [{"Untagged": ...}, {"Deleted": ...}]."""
    from ketch.oci import reference

    rec = store.resolve(name)
    ref = reference.try_parse(name)
    named = ref is not None and (ref.familiar() in rec.repo_tags or (
        ref.digest is not None and f"{ref.familiar_name()}@{ref.digest}" in rec.repo_digests))
    refs = len(rec.repo_tags) + (0 if rec.repo_tags else len(rec.repo_digests))
    if not named and len(rec.repo_tags) > 1 and not force:
        raise Conflict(f"conflict: unable to delete {rec.id[7:19]} (must be forced) - "
                       f"image is referenced in multiple repositories")
    users = store.users(rec.id)
    if users and not force and (not named or refs <= 1):
        raise Conflict(f"conflict: unable to remove repository reference \"{name}\" "
                       f"(must force) - container {users[0][:12]} is using its "
                       f"referenced image {rec.id[7:19]}")
    out: list[dict[str, str]] = []
    if named and ref.digest:
        store.conn.execute("DELETE FROM repo_digests WHERE repo=? AND digest=? AND image_id=?",
                           (ref.name, ref.digest, rec.id))
        out.append({"Untagged": ref.familiar()})
    else:
        for tag in [ref.familiar()] if named else rec.repo_tags:
            store.untag(tag)
            out.append({"Untagged": tag})
    left = store.get(rec.id)
    if not left.repo_tags:
        # The last tag takes the digest references with it, as in Docker.
        for d in left.repo_digests:
            out.append({"Untagged": d})
        store.delete(rec.id)
        out.append({"Deleted": rec.id})
        if prune:
            collect(store)
    return out


def prune(store: ImageStore, all_images: bool = False) -> tuple[list[dict[str, str]], int]:
    """`docker image prune [-a]`: dangling (or all unused) images, then GC."""
    report: list[dict[str, str]] = []
    for rec in store.all():
        if store.users(rec.id) or (rec.repo_tags and not all_images):
            continue
        if rec.id in store.parent_ids() and not all_images:
            continue
        for t in rec.repo_tags:
            store.untag(t)
            report.append({"Untagged": t})
        store.delete(rec.id)
        report.append({"Deleted": rec.id})
    return report, collect(store)


def disk_usage(store: ImageStore) -> dict[str, Any]:
    """Shared vs unique bytes of images and containers (the data behind `system df`)."""
    c = store.conn
    sizes = {r[0]: r[1] for r in c.execute("SELECT key, size FROM snapshots WHERE kind='layer'")}
    users: dict[str, int] = {}
    for (chain,) in c.execute("SELECT chain_id FROM image_layers"):
        users[chain[7:]] = users.get(chain[7:], 0) + 1
    images = []
    for rec in store.all():
        keys = [ch[7:] for ch in rec.chain]
        shared = sum(sizes.get(k, 0) for k in keys if users.get(k, 0) > 1)
        images.append({"Id": rec.id, "RepoTags": rec.repo_tags, "Created": rec.created,
                       "Size": rec.size, "SharedSize": shared, "UniqueSize": rec.size - shared,
                       "Containers": len(store.users(rec.id))})
    containers = []
    for row in c.execute("SELECT key, image_id, parent FROM snapshots WHERE kind='active'"):
        rw = store.snap.usage(row["key"]) if store.snap.exists(row["key"]) else 0
        base = sum(sizes.get(k, 0) for k in store.parents_of_key(row["parent"]))
        containers.append({"Id": row["key"], "ImageID": row["image_id"], "SizeRw": rw,
                           "SizeRootFs": rw + base})
    return {"Snapshotter": store.snap.name, "LayersSize": sum(sizes.values()),
            "Images": images, "Containers": containers,
            "BlobsSize": sum(s for _d, s in store.content.walk())}


def check(store: ImageStore, verify_blobs: bool = True) -> list[str]:
    """Every problem found, one line each (empty list: the store is consistent)."""
    problems = []
    if verify_blobs:
        for dig, _size in store.content.walk():
            why = store.content.verify(dig)
            if why:
                problems.append(f"blob {dig}: {why}")
    for rec in store.all():
        name = rec.repo_tags[0] if rec.repo_tags else rec.id[7:19]
        for what, dig in [("manifest", rec.manifest_digest), ("config", rec.id)] + [
                (f"layer {ly['idx']}", ly["blob"]) for ly in rec.layers]:
            if not store.content.exists(dig):
                problems.append(f"image {name}: {what} blob {dig} is missing")
        if store.content.exists(rec.manifest_digest):
            try:
                m = spec.parse_manifest(store.content.read(rec.manifest_digest))
                if m["config"]["digest"] != rec.id:
                    problems.append(f"image {name}: manifest names config {m['config']['digest']}")
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                problems.append(f"image {name}: manifest: {exc}")
        for ch in rec.chain:
            key = _digest.hex_of(ch)
            if not store.snap.exists(key):
                problems.append(f"image {name}: layer snapshot {key[:12]} is missing")
    for row in store.conn.execute("SELECT key, parent, kind FROM snapshots"):
        if row["parent"] and not store.conn.execute(
                "SELECT 1 FROM snapshots WHERE key=?", (row["parent"],)).fetchone():
            problems.append(f"snapshot {row['key'][:12]}: parent {row['parent'][:12]} missing")
        if not store.snap.exists(row["key"]):
            problems.append(f"snapshot {row['key'][:12]} ({row['kind']}): directory missing")
    known = {r[0] for r in store.conn.execute("SELECT key FROM snapshots")}
    for key in store.snap.keys():
        if key not in known:
            problems.append(f"snapshot directory {key[:12]} is not in the database")
    for key in orphan_rootfs(store):
        problems.append(f"container snapshot {key[:12]}: no such container "
                        f"(`ketch image prune` removes it)")
    return problems
