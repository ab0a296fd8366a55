"""The image store's tables and its record type.

    images       id (sha256 of the config), manifest, config JSON, created, size, top chain
    image_layers image -> (index, chain id, diff id, blob, media type)
    tags         full normalised name (docker.io/library/busybox:latest) -> image
    repo_digests repository + manifest digest -> image (RepoDigests)
    snapshots    key (chain hex or container id), parent key, kind layer|active, size
"""

from __future__ import annotations

from ketch.oci.record import Factory, Record

TYPE_CHECKING = False  # importing typing would cost `ketch images` ~4 ms
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL, manifest_media_type TEXT NOT NULL,
    config TEXT NOT NULL, created TEXT, size INTEGER NOT NULL DEFAULT 0,
    top_chain TEXT, parent TEXT, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    chain_id TEXT NOT NULL, diff_id TEXT NOT NULL, blob TEXT NOT NULL, media_type TEXT,
    blob_size INTEGER, PRIMARY KEY (image_id, idx));
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    repo TEXT NOT NULL, tag TEXT NOT NULL, added REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests (
    repo TEXT NOT NULL, digest TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, PRIMARY KEY (repo, digest));
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY, parent TEXT, kind TEXT NOT NULL, diff_id TEXT, image_id TEXT,
    size INTEGER NOT NULL DEFAULT 0, snapshotter TEXT NOT NULL, created REAL NOT NULL);
"""


class ImageRecord(Record):
    """One image as the store knows it (`layers` and `chain` empty in listings)."""

    id: str
    config: dict[str, Any]
    repo_tags: list[str]
    repo_digests: list[str]
    created: str
    size: int
    top_chain_id: str | None
    manifest_digest: str = ""
    manifest_media_type: str = ""
    layers: list[dict[str, Any]] = Factory(list)
    chain: list[str] = Factory(list)


_SCHEMA_DONE: set[str] = set()


def ensure_schema(conn: sqlite3.Connection) -> None:
    key = str(conn.execute("PRAGMA database_list").fetchone()[2])
    if key not in _SCHEMA_DONE:
        conn.executescript(SCHEMA)
        _SCHEMA_DONE.add(key)


