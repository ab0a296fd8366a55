"""`save` and `load`: image tarballs in both common shapes.

`save` writes one tar that is at once an OCI image layout (oci-layout,
index.json, blobs/sha256/...) and a docker-archive (manifest.json naming the
same blob files), as Docker 25 does, so `docker load`, `skopeo copy
docker-archive:`/`oci-archive:` and `umoci` (on the unpacked layout) all
read it. `load` takes either shape, as a tar or an unpacked directory. The
archive is untrusted: members are only read by name, never extracted, and
every blob goes through the content store's digest verification.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from ketch.errors import DataError, InvalidArgument, NotFound
from ketch.image import gc
from ketch.image.store import ImageRecord, ImageStore
from ketch.oci import digest as _digest
from ketch.oci import image_spec as spec
from ketch.oci import reference as _ref

_CHUNK = 1 << 20
_TO_OCI = {spec.DOCKER_CONFIG: spec.OCI_CONFIG, spec.DOCKER_LAYER: spec.OCI_LAYER,
           spec.DOCKER_LAYER_GZIP: spec.OCI_LAYER_GZIP,
           spec.DOCKER_LAYER_FOREIGN: spec.OCI_LAYER_NONDIST_GZIP}


# -- save ------------------------------------------------------------------------
def _oci_manifest(store: ImageStore, rec: ImageRecord) -> tuple[str, bytes]:
    raw = store.content.read(rec.manifest_digest)
    if rec.manifest_media_type == spec.OCI_MANIFEST:
        return rec.manifest_digest, raw
    m = json.loads(raw)
    m["mediaType"] = spec.OCI_MANIFEST
    m["config"]["mediaType"] = _TO_OCI.get(m["config"]["mediaType"], spec.OCI_CONFIG)
    for layer in m["layers"]:
        layer["mediaType"] = _TO_OCI.get(layer["mediaType"], layer["mediaType"])
    data = spec.canonical(m)
    return _digest.of_bytes(data), data


def save(store: ImageStore, names: list[str], out: IO[bytes]) -> None:
    """Write the named images (with the names given, or all their tags) as one tar."""
    entries: list[tuple[ImageRecord, list[str]]] = []
    for name in names:
        rec = store.resolve(name)
        ref = _ref.try_parse(name)
        tags = [ref.familiar()] if ref and not ref.digest and ref.familiar() in rec.repo_tags \
            else rec.repo_tags
        entries.append((rec, tags))
    now = int(time.time())  # whole seconds: no PAX header per member
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        written: set[str] = set()

        def add_bytes(path: str, data: bytes) -> None:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.mode = len(data), now, 0o644
            tf.addfile(ti, _BytesReader(data))

        def add_blob(dig: str, data: bytes | None = None) -> str:
            path = "blobs/sha256/" + _digest.hex_of(dig)
            if path not in written:
                written.add(path)
                if data is not None:
                    add_bytes(path, data)
                else:
                    with store.content.open(dig) as f:
                        ti = tarfile.TarInfo(path)
                        ti.size, ti.mtime, ti.mode = os.fstat(f.fileno()).st_size, now, 0o644
                        tf.addfile(ti, f)
            return path

        index, manifest_json, by_id = [], [], {}
        for rec, tags in entries:
            mdig, mraw = _oci_manifest(store, rec)
            cfg_path = add_blob(rec.id)
            layer_paths = [add_blob(ly["blob"]) for ly in rec.layers]
            add_blob(mdig, mraw)
            desc = spec.descriptor(spec.OCI_MANIFEST, mdig, len(mraw))
            for t in tags or [None]:
                d = dict(desc)
                if t:
                    r = _ref.parse(t)
                    d["annotations"] = {"io.containerd.image.name": str(r),
                                        spec.ANNOTATION_REF_NAME: r.tag}
                index.append(d)
            if rec.id in by_id:  # one docker-archive entry per image, all its names
                by_id[rec.id]["RepoTags"] += [t for t in tags if t not in by_id[rec.id]["RepoTags"]]
                continue
            by_id[rec.id] = {"Config": cfg_path, "RepoTags": list(tags), "Layers": layer_paths}
            manifest_json.append(by_id[rec.id])
        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": spec.OCI_INDEX,
                                            "manifests": index}).encode())
        add_bytes("manifest.json", json.dumps(manifest_json).encode())


class _BytesReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out


# -- load ------------------------------------------------------------------------
class _Source:
    """Named members of an archive: a tar (random access) or an unpacked directory."""

    def __init__(self, path: Path):
        self.dir = path if path.is_dir() else None
        self.tar = None
        if self.dir is None:
            try:
                self.tar = tarfile.open(path, "r:*")
                everything = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}
            except (tarfile.TarError, EOFError, OSError) as exc:
                why = (str(exc).splitlines() or ["unreadable"])[0].rstrip(":")
                raise DataError(f"load: {path} is not an image archive ({why})") from None
            self.members = {n: m for n, m in everything.items() if m.isfile()}
            # docker save (before 25) links repeated layers: <id>/layer.tar ->
            # ../<other>/layer.tar. Links resolve among the members only.
            for name, m in everything.items():
                if m.issym() or m.islnk():
                    target = _member_target(name, m)
                    if target in self.members:
                        self.members[name] = self.members[target]

    def has(self, name: str) -> bool:
        if self.dir is not None:
            p = self._safe(name)
            return p is not None and p.is_file()
        return name in self.members

    def _safe(self, name: str) -> Path | None:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise DataError(f"load: archive path {name!r} climbs out of the archive")
        p = self.dir.joinpath(*parts)
        return None if p.is_symlink() else p

    def open(self, name: str) -> IO[bytes]:
        if not self.has(name):
            raise DataError(f"load: archive has no {name!r}")
        if self.dir is not None:
            return open(self._safe(name), "rb")
        return self.tar.extractfile(self.members[name])

    def size(self, name: str) -> int:
        if self.dir is not None:
            return self._safe(name).stat().st_size
        return self.members[name].size

    def read_json(self, name: str) -> Any:
        with self.open(name) as f:
            data = f.read(64 << 20)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise DataError(f"load: {name} is not JSON ({exc})") from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _member_target(name: str, m: tarfile.TarInfo) -> str:
    base = [] if m.islnk() or m.linkname.startswith("/") else name.split("/")[:-1]
    parts: list[str] = []
    for p in base + m.linkname.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p not in ("", "."):
            parts.append(p)
    return "/".join(parts)


def _copy_blob(store: ImageStore, src: _Source, name: str,
               expected: str | None = None, progress=None) -> tuple[str, int, str]:
    """Into the content store; returns (digest, size, OCI layer media type by magic)."""
    if expected is None and name.startswith("blobs/sha256/") and _digest.is_digest(
            "sha256:" + name[13:]):
        expected = "sha256:" + name[13:]   # a named blob: skip it if we have it
    with src.open(name) as f:
        head = f.read(4)
        total = src.size(name)
        ref = f"load-{expected or name}-{os.getpid()}"
        with store.content.writer(ref, expected) as w:
            if w.exists:
                w.commit()
                return expected, store.content.size(expected), _compressed(head)
            w.truncate()
            w.write(head)
            while chunk := f.read(_CHUNK):
                w.write(chunk)
                if progress:
                    progress("copy", expected or name, w.offset, total)
            size = w.offset
            dig = w.commit()
    return dig, size, _compressed(head)


def _compressed(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return spec.OCI_LAYER_GZIP
    if head == b"\x28\xb5\x2f\xfd":
        return spec.OCI_LAYER_ZSTD
    return spec.OCI_LAYER


def load(store: ImageStore, path: Path, progress=None) -> list[str]:
    """Load every image of an archive; returns Docker's report lines."""
    src = _Source(path)
    try:
        with gc.lease(store):
            if src.has("manifest.json"):
                return _load_docker(store, src, progress)
            if src.has("index.json"):
                return _load_oci(store, src, progress)
    finally:
        src.close()
    raise DataError("load: archive has neither manifest.json nor index.json")


def _load_docker(store: ImageStore, src: _Source, progress) -> list[str]:
    out = []
    entries = src.read_json("manifest.json")
    if not isinstance(entries, list):
        raise DataError("load: manifest.json is not a list")
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("Config"), str) \
                or not isinstance(e.get("Layers"), list):
            raise DataError("load: malformed manifest.json entry")
        cfg, cfg_size, _ = _copy_blob(store, src, e["Config"])
        spec.parse_config(store.content.read(cfg), f"load: config {e['Config']}")
        layers = []
        for name in e["Layers"]:
            dig, size, media = _copy_blob(store, src, str(name), progress=progress)
            layers.append(spec.descriptor(media, dig, size))
        manifest = {"schemaVersion": 2, "mediaType": spec.OCI_MANIFEST,
                    "config": spec.descriptor(spec.OCI_CONFIG, cfg, cfg_size), "layers": layers}
        mdig = store.content.put(spec.canonical(manifest))
        tags = [t for t in e.get("RepoTags") or [] if isinstance(t, str)]
        for t in tags:
            _ref.parse(t)
        rec = store.add_manifest(mdig, tags, progress=progress)
        out += [f"Loaded image: {_ref.parse(t).familiar()}" for t in tags] or [
            f"Loaded image ID: {rec.id}"]
    return out


def _load_oci(store: ImageStore, src: _Source, progress) -> list[str]:
    index = spec.parse_index(json.dumps(src.read_json("index.json")).encode(), "load: index.json")
    out = []
    for desc in index["manifests"]:
        desc = _descend(store, src, desc)
        mdig = desc["digest"]
        manifest = spec.parse_manifest(store.content.read(mdig), f"load: manifest {mdig}")
        for blob in [manifest["config"], *manifest["layers"]]:
            _copy_blob(store, src, "blobs/sha256/" + _digest.hex_of(blob["digest"]),
                       blob["digest"], progress)
        ann = desc.get("annotations") or {}
        name = ann.get("io.containerd.image.name") or ann.get(spec.ANNOTATION_REF_NAME)
        ref = _ref.try_parse(name) if name else None
        tags = [ref.familiar()] if ref and not ref.digest and (
            "/" in name or ":" in name) else []
        rec = store.add_manifest(mdig, tags, progress=progress)
        out += [f"Loaded image: {t}" for t in tags] or [f"Loaded image ID: {rec.id}"]
    return out


def _descend(store: ImageStore, src: _Source, desc: dict) -> dict:
    """Follow nested indexes down to this platform's manifest; copy the manifests."""
    for _ in range(4):
        dig = desc["digest"]
        _copy_blob(store, src, "blobs/sha256/" + _digest.hex_of(dig), dig)
        if desc.get("mediaType") not in spec.INDEXES:
            return desc
        inner = spec.parse_index(store.content.read(dig), f"load: index {dig}")
        picked = spec.pick_platform(inner)
        picked.setdefault("annotations", desc.get("annotations") or {})
        desc = picked
    raise DataError("load: indexes nested too deeply")


def spool(stream: IO[bytes]) -> Path:
    """Copy a non-seekable input (stdin) to a temp file under the store's tmp dir."""
    fd, name = tempfile.mkstemp(prefix="ketch-load-", suffix=".tar")
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(stream, f, _CHUNK)
    return Path(name)


def check_names(names: list[str]) -> None:
    if not names:
        raise InvalidArgument("save: requires at least 1 image")
    for n in names:
        if not n:
            raise NotFound("No such image: ''")
