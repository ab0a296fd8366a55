"""The image index: names -> images -> layer chains, kept in the engine's database.

ImageStore works over a connection the engine passes in (never opens one),
the content store (blobs) and a snapshotter (layer chains); its tables are
in schema.py (owner "images").

Reference counts are derived, not stored: a layer snapshot is referenced by
every image whose chain contains it and every snapshot on top of it, so a
crash can never leave a count wrong. GC removes whatever has no reference.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from ketch.errors import Conflict, DataError, NotFound
from ketch.image.schema import ImageRecord, ensure_schema
from ketch.oci import digest as _digest
from ketch.oci import image_spec as spec
from ketch.oci import reference as _ref


class GcLock:
    """`with GcLock(root, mode):` holds flock(mode) on <root>/gc.lock.

    A class rather than a contextlib generator: listing images never locks,
    and contextlib (and fcntl) would cost every `ketch images` ~1 ms to import.
    """

    def __init__(self, root: Path, mode: int | None = None):
        self.root, self.mode, self.fd = root, mode, -1

    def __enter__(self) -> None:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.root / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH if self.mode is None else self.mode)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


class ImageStore:
    def __init__(self, conn: sqlite3.Connection, root: str | Path):
        ensure_schema(conn)
        self.conn = conn
        self.root = Path(root)
        self._content = self._snap = None

    # The blob store and the snapshotter are opened on first use: listing and
    # resolving images (the hot path of `ketch images`) needs neither.
    @property
    def content(self):
        if self._content is None:
            from ketch.content.store import ContentStore

            self._content = ContentStore(self.root / "content")
        return self._content

    @property
    def snap(self):
        if self._snap is None:
            from ketch.snapshot.base import pick

            self._snap = pick(self.root / "snapshots")
        return self._snap

    def lock(self, mode: int | None = None) -> GcLock:
        """The GC lock: writers of not-yet-referenced blobs and snapshots hold it
        shared (the default), garbage collection exclusive (fcntl.LOCK_EX), so GC
        never takes work in flight."""
        return GcLock(self.root, mode)

    # -- lookup --------------------------------------------------------------
    def resolve(self, ref_or_id: str) -> ImageRecord:
        """By name (busybox, busybox:1, full name, name@digest) or id (full or a prefix)."""
        image_id = self.resolve_id(ref_or_id)
        if image_id is None:
            raise NotFound(f"No such image: {ref_or_id}")
        return self.get(image_id)

    def resolve_id(self, value: str) -> str | None:
        c = self.conn
        ref = _ref.try_parse(value)
        if ref is not None:
            if ref.digest:
                row = c.execute("SELECT image_id FROM repo_digests WHERE repo=? AND digest=?",
                                (ref.name, ref.digest)).fetchone()
                if row:
                    return row[0]
            else:
                row = c.execute("SELECT image_id FROM tags WHERE name=?", (str(ref),)).fetchone()
                if row:
                    return row[0]
        hexpart = value.removeprefix("sha256:")
        if value.startswith("sha256:") or (len(hexpart) >= 4 and all(
                ch in "0123456789abcdef" for ch in hexpart)):
            rows = c.execute("SELECT id FROM images WHERE id LIKE ? LIMIT 2",
                             (f"sha256:{hexpart}%",)).fetchall()
            if len(rows) > 1:
                raise Conflict(f"image id prefix {value!r} is ambiguous")
            if rows:
                return rows[0][0]
        return None

    def get(self, image_id: str) -> ImageRecord:
        row = self.conn.execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        return self._record(row)

    def _record(self, row: sqlite3.Row) -> ImageRecord:
        c = self.conn
        tags = [_ref.familiar(r[0]) for r in c.execute(
            "SELECT name FROM tags WHERE image_id=? ORDER BY added, name", (row["id"],))]
        digests = [f"{_ref.familiar(r[0])}@{r[1]}" for r in
                   c.execute("SELECT repo, digest FROM repo_digests WHERE image_id=? "
                             "ORDER BY repo", (row["id"],))]
        layers = [dict(r) for r in c.execute(
            "SELECT l.*, s.size AS size FROM image_layers l LEFT JOIN snapshots s "
            "ON s.key = substr(l.chain_id, 8) WHERE l.image_id=? ORDER BY l.idx", (row["id"],))]
        return ImageRecord(
            id=row["id"], config=json.loads(row["config"]), repo_tags=tags,
            repo_digests=digests, created=row["created"] or "", size=row["size"],
            top_chain_id=row["top_chain"] or None, manifest_digest=row["manifest_digest"],
            manifest_media_type=row["manifest_media_type"], layers=layers,
            chain=[ly["chain_id"] for ly in layers])

    def all(self) -> list[ImageRecord]:
        rows = self.conn.execute("SELECT * FROM images ORDER BY created DESC, added DESC").fetchall()
        return [self._record(r) for r in rows]

    def summaries(self) -> list[ImageRecord]:
        """Every image with names but without layers, in three queries (for listings)."""
        c = self.conn
        tags: dict[str, list[str]] = {}
        for image_id, name in c.execute("SELECT image_id, name FROM tags ORDER BY added, name"):
            tags.setdefault(image_id, []).append(_ref.familiar(name))
        digests: dict[str, list[str]] = {}
        for image_id, repo, dig in c.execute(
                "SELECT image_id, repo, digest FROM repo_digests ORDER BY repo"):
            digests.setdefault(image_id, []).append(f"{_ref.familiar(repo)}@{dig}")
        out = []
        for row in c.execute("SELECT id, config, created, size, top_chain, manifest_digest, "
                             "manifest_media_type FROM images ORDER BY created DESC, added DESC"):
            out.append(ImageRecord(
                id=row[0], config=json.loads(row[1]), repo_tags=tags.get(row[0], []),
                repo_digests=digests.get(row[0], []), created=row[2] or "", size=row[3],
                top_chain_id=row[4] or None, manifest_digest=row[5], manifest_media_type=row[6]))
        return out

    # -- adding --------------------------------------------------------------
    def ensure_layer(self, parent_chain: str | None, blob: str, diff_id: str | None,
                     expected_chain: str | None = None, progress=None) -> str:
        """Unpack one layer blob on top of `parent_chain` unless already there.

        Returns the new chain ID. Verifies the uncompressed stream against
        `diff_id` (DataError on mismatch, nothing committed)."""
        if diff_id and expected_chain is None:
            expected_chain = diff_id if parent_chain is None else _digest.of_bytes(
                f"{parent_chain} {diff_id}".encode())
        if expected_chain and self._has_snapshot(expected_chain):
            if progress:
                progress("exists", blob, 0, 0)
            return expected_chain
        with self.lock():
            return self._unpack_layer(parent_chain, blob, diff_id, expected_chain, progress)

    def _unpack_layer(self, parent_chain: str | None, blob: str, diff_id: str | None,
                      expected_chain: str | None, progress) -> str:
        from ketch.image.unpack import unpack

        parents = self.parents(parent_chain)
        fs = self.snap.begin_layer(_digest.hex_of(expected_chain or blob), parents)
        try:
            total = self.content.size(blob)
            report = (lambda n: progress("extract", blob, n, total)) if progress else None
            with self.content.open(blob) as f:
                got, _n = unpack(f, str(fs), self.snap.whiteouts, report)
            if diff_id and got != diff_id:
                raise DataError(f"layer {blob}: uncompressed content {got} does not match "
                                f"diff_id {diff_id}")
            chain = got if parent_chain is None else _digest.of_bytes(
                f"{parent_chain} {got}".encode())
            size = self.snap.layer_size(fs, parents)
            self.snap.commit_layer(_digest.hex_of(chain), fs)
            if progress:
                progress("done", blob, total, total)
        except BaseException:
            self.snap.abort_layer(fs)
            raise
        self.conn.execute(
            "INSERT OR IGNORE INTO snapshots(key, parent, kind, diff_id, size, snapshotter, "
            "created) VALUES (?,?,?,?,?,?,?)",
            (_digest.hex_of(chain), parent_chain and _digest.hex_of(parent_chain), "layer",
             got, size, self.snap.name, time.time()))
        return chain

    def publish_layer(self, staged, parent_chain: str | None) -> str:
        """Commit a layer staged by ketch.image.layers and record it (chain order:
        its parent is published first, so the snapshot tree never has a gap)."""
        key = _digest.hex_of(staged.chain)
        try:
            self.snap.commit_layer(key, staged.fs)
        except BaseException:
            self.snap.abort_layer(staged.fs)
            raise
        self.conn.execute(
            "INSERT OR IGNORE INTO snapshots(key, parent, kind, diff_id, size, snapshotter, "
            "created) VALUES (?,?,?,?,?,?,?)",
            (key, parent_chain and _digest.hex_of(parent_chain), "layer", staged.diff_id,
             staged.size, self.snap.name, time.time()))
        return staged.chain

    def _has_snapshot(self, chain: str) -> bool:
        key = _digest.hex_of(chain)
        row = self.conn.execute("SELECT 1 FROM snapshots WHERE key=?", (key,)).fetchone()
        return row is not None and self.snap.exists(key)

    def parents(self, chain: str | None) -> list[str]:
        """Snapshot keys of a chain, top first (what snapshotters take)."""
        out: list[str] = []
        key = chain and _digest.hex_of(chain)
        while key:
            out.append(key)
            row = self.conn.execute("SELECT parent FROM snapshots WHERE key=?", (key,)).fetchone()
            if row is None:
                raise DataError(f"snapshot {key[:12]} is missing from the database")
            key = row[0]
        return out

    def add_manifest(self, manifest_digest: str, names: list[str] = (),
                     repo_for_digest: str | None = None, progress=None) -> ImageRecord:
        """Register an image whose manifest, config and layer blobs are in the content store.

        `progress(event, blob digest, done, total)` hears "extract" (bytes of the
        blob consumed), "done" and "exists" (snapshot already there) per layer."""
        with self.lock():
            return self._add_manifest(manifest_digest, names, repo_for_digest, progress)

    def _add_manifest(self, manifest_digest: str, names: list[str],
                      repo_for_digest: str | None, progress) -> ImageRecord:
        raw = self.content.read(manifest_digest)
        manifest = spec.parse_manifest(raw, f"manifest {manifest_digest}")
        cfg_desc = manifest["config"]
        if not self.content.exists(cfg_desc["digest"]):
            raise DataError(f"manifest {manifest_digest}: config blob {cfg_desc['digest']} "
                            f"is missing")
        config_raw = self.content.read(cfg_desc["digest"])
        config = spec.parse_config(config_raw, f"config {cfg_desc['digest']}")
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest["layers"]):
            raise DataError(f"manifest {manifest_digest}: {len(manifest['layers'])} layers but "
                            f"the config lists {len(diff_ids)} diff_ids")
        chain = None
        for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            if not self.content.exists(layer["digest"]):
                raise DataError(f"manifest {manifest_digest}: layer blob {layer['digest']} "
                                f"is missing")
            chain = self.ensure_layer(chain, layer["digest"], diff_id, progress=progress)
        return self.record_image(manifest_digest, manifest, config, config_raw, names,
                                 repo_for_digest)

    def record_image(self, manifest_digest: str, manifest: dict, config: dict,
                     config_raw: bytes, names: list[str] = (),
                     repo_for_digest: str | None = None,
                     repo_digest: str | None = None) -> ImageRecord:
        """Register an image whose layer snapshots exist. `repo_digest` is what the
        registry named (an index's digest when a tag named one, as Docker records);
        by default the manifest's."""
        image_id = manifest["config"]["digest"]
        diff_ids = config["rootfs"]["diff_ids"]
        chains = _digest.chain_ids(diff_ids)
        size = 0
        for ch in chains:
            row = self.conn.execute("SELECT size FROM snapshots WHERE key=?",
                                    (_digest.hex_of(ch),)).fetchone()
            size += row[0] if row else 0
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT OR IGNORE INTO images(id, manifest_digest, manifest_media_type, "
                      "config, created, size, top_chain, added) VALUES (?,?,?,?,?,?,?,?)",
                      (image_id, manifest_digest, manifest.get("mediaType", spec.OCI_MANIFEST),
                       config_raw.decode(), config.get("created"), size,
                       chains[-1] if chains else None, time.time()))
            for i, (layer, diff, ch) in enumerate(zip(manifest["layers"], diff_ids, chains,
                                                       strict=True)):
                c.execute("INSERT OR IGNORE INTO image_layers VALUES (?,?,?,?,?,?,?)",
                          (image_id, i, ch, diff, layer["digest"], layer.get("mediaType"),
                           layer.get("size")))
            for name in names:
                self._tag(image_id, name)
            if repo_for_digest:
                repo = _ref.parse(repo_for_digest, default_tag=False).name
                c.execute("INSERT OR REPLACE INTO repo_digests VALUES (?,?,?)",
                          (repo, repo_digest or manifest_digest, image_id))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return self.get(image_id)

    # -- names ---------------------------------------------------------------
    def _tag(self, image_id: str, name: str) -> None:
        ref = _ref.parse(name)
        if ref.digest:
            raise Conflict(f"refusing to create a tag with a digest reference: {name}")
        self.conn.execute("INSERT OR REPLACE INTO tags VALUES (?,?,?,?,?)",
                          (str(ref), image_id, ref.name, ref.tag, time.time()))

    def tag(self, image_id: str, name: str) -> None:
        self._tag(image_id, name)

    def untag(self, name: str) -> str | None:
        """Remove one tag; returns the image id it pointed at (None if no such tag)."""
        ref = _ref.parse(name)
        row = self.conn.execute("SELECT image_id FROM tags WHERE name=?", (str(ref),)).fetchone()
        if row is None:
            return None
        self.conn.execute("DELETE FROM tags WHERE name=?", (str(ref),))
        return row[0]

    def delete(self, image_id: str) -> None:
        """Forget an image (tags, digests, layers rows); blobs and snapshots go at gc()."""
        self.conn.execute("DELETE FROM images WHERE id=?", (image_id,))

    # -- container snapshots -------------------------------------------------
    def prepare_rootfs(self, image: ImageRecord, container_id: str) -> list[dict]:
        """A writable snapshot for a container on top of the image's chain: its mounts."""
        parents = self.parents(image.top_chain_id)
        for key in parents:
            if not self.snap.exists(key):
                raise DataError(f"image {image.id[7:19]}: layer snapshot {key[:12]} is missing "
                                f"(run `ketch system check`)")
        if self.conn.execute("SELECT 1 FROM snapshots WHERE key=?", (container_id,)).fetchone():
            raise Conflict(f"a snapshot for container {container_id} already exists")
        self.conn.execute(
            "INSERT INTO snapshots(key, parent, kind, image_id, snapshotter, created) "
            "VALUES (?,?,?,?,?,?)", (container_id, parents[0] if parents else None, "active",
                                     image.id, self.snap.name, time.time()))
        try:
            return self.snap.prepare(container_id, parents)
        except BaseException:
            self.conn.execute("DELETE FROM snapshots WHERE key=?", (container_id,))
            self.snap.remove(container_id)
            raise

    def rootfs_mounts(self, container_id: str) -> list[dict]:
        row = self._active(container_id)
        return self.snap.mounts(container_id, self.parents_of_key(row["parent"]))

    def _active(self, container_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM snapshots WHERE key=? AND kind='active'",
                                (container_id,)).fetchone()
        if row is None:
            raise NotFound(f"no rootfs snapshot for container {container_id}")
        return row

    def parents_of_key(self, key: str | None) -> list[str]:
        return self.parents(f"sha256:{key}") if key else []

    def remove_rootfs(self, container_id: str) -> None:
        """Drop a container's writable snapshot (a no-op if it has none)."""
        self.snap.remove(container_id)
        self.conn.execute("DELETE FROM snapshots WHERE key=? AND kind='active'", (container_id,))

    # -- relations -------------------------------------------------------------
    def parent_of(self, image_id: str) -> str | None:
        row = self.conn.execute("SELECT parent FROM images WHERE id=?", (image_id,)).fetchone()
        return row[0] if row else None

    def parent_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT parent FROM images WHERE parent IS NOT NULL")}

    def users(self, image_id: str) -> list[str]:
        """Containers that use an image: the engine's containers table, and rootfs snapshots."""
        out = [r[0] for r in self.conn.execute(
            "SELECT key FROM snapshots WHERE kind='active' AND image_id=?", (image_id,))]
        has = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='containers'").fetchone()
        if has:
            out += [r[0] for r in self.conn.execute(
                "SELECT id FROM containers WHERE image_id=?", (image_id,))]
        return sorted(set(out))
