"""The engine's registry facade: pull, push, login, logout (Options in, Reports out).

Pull pipeline: the manifest is resolved (an index walked to one platform),
then ketch.image.pull fetches every missing layer in a bounded thread pool
into the content store's resumable ingest and unpacks it (with overlay:
all layers at once, each while it streams in; with copy: in chain order),
while this thread publishes the snapshots in chain order. Only this thread
touches the database. The whole pull holds the store's GC lease. A killed
pull leaves partial ingests that the next pull resumes with Range requests,
and layer snapshots that are either complete or absent.

Progress goes to an optional callback as Event(id, status, current, total),
from worker threads too: the front end renders it (bars, lines, or nothing).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ketch.engine import db
from ketch.errors import DataError, InvalidArgument, NotFound
from ketch.image import pull as _pull
from ketch.oci import digest as _digest
from ketch.oci import reference as _ref
from ketch.registry import config as _config
from ketch.registry import manifest as _mf
from ketch.registry import open_repository

#: Docker's default max-concurrent-downloads / -uploads.
MAX_DOWNLOADS = int(os.environ.get("KETCH_MAX_CONCURRENT_DOWNLOADS") or 3)
MAX_UPLOADS = int(os.environ.get("KETCH_MAX_CONCURRENT_UPLOADS") or 5)


@dataclass
class Event:
    id: str          # short layer id, or "" for image-level messages
    status: str      # Docker's words: "Pulling fs layer", "Downloading", "Pull complete", ...
    current: int = 0
    total: int = 0


Progress = Callable[[Event], None]


@dataclass
class PullReport:
    reference: str           # full normalised: docker.io/library/busybox:latest
    image_id: str
    digest: str              # repo digest (the index's when the tag named one)
    downloaded: bool         # False: "Image is up to date"
    layers: list[str] = field(default_factory=list)


@dataclass
class PushReport:
    reference: str
    tag: str
    digest: str
    size: int


def _parse(ref: str) -> _ref.Reference:
    return _ref.parse(ref)


def _emit(progress: Progress | None, *args) -> None:
    if progress:
        progress(Event(*args))


def _emitter(progress: Progress | None):
    """ketch.image.pull's (id, status, current, total) callback as Events."""
    return (lambda *args: progress(Event(*args))) if progress else None


# -- pull -------------------------------------------------------------------------------------

def pull(ref: str, platform: str | None = None, all_tags: bool = False,
         progress: Progress | None = None) -> list[PullReport]:
    """Pull `ref` (or every tag of its repository) into the store; one report per image."""
    r = _parse(ref)
    want = _mf.parse_platform(platform)
    if all_tags:
        if r.digest or ":" in ref.split("@")[0].rsplit("/", 1)[-1]:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        repo = open_repository(r.domain, r.path)
        try:
            tags = repo.tags()
        finally:
            repo.t.close()
        if not tags:
            raise DataError(f"repository {r.familiar_name()} has no tags")
        return [pull_one(r.with_tag(t), want, progress, strict=bool(platform))
                for t in sorted(tags)]
    return [pull_one(r, want, progress, strict=bool(platform))]


def pull_one(r: _ref.Reference, want: dict[str, str],
             progress: Progress | None = None, strict: bool = False) -> PullReport:
    """Pull one reference. `strict`: the platform was asked for, so a single-platform
    image of another platform is refused (as Docker does) instead of taken."""
    from ketch.engine import images as _images

    repo = open_repository(r.domain, r.path)
    conn = db.connect()
    try:
        store = _images.store(conn)
        target = r.digest or r.tag
        _emit(progress, "", f"{target}: Pulling from {r.path}")
        resolved = repo.resolve(target, want)
        # Blobs and snapshots are unreferenced until the image is recorded: hold
        # the GC lock shared so a concurrent prune leaves them alone.
        with store.lock():
            return _pull_resolved(r, want, strict, repo, store, resolved, progress)
    finally:
        conn.close()
        repo.t.close()


def _pull_resolved(r: _ref.Reference, want: dict[str, str], strict: bool, repo, store,
                   resolved, progress: Progress | None) -> PullReport:
    """Fetch config and layers of a resolved manifest, unpack, and record the image."""
    from ketch.oci import image_spec as spec

    content = store.content
    for data, dig in ((resolved.index_bytes, resolved.index_digest),
                      (resolved.manifest_bytes, resolved.manifest_digest)):
        if data is not None and not content.exists(dig):
            _store_bytes(content, data, dig)
    cfg = resolved.config
    before = store.resolve_id(str(r))
    known = before is not None and before == cfg["digest"]
    where = f"{repo.t.registry}/{repo.name}"
    _pull.fetch_blobs(repo, where, content, [cfg], None)
    config_raw = content.read(cfg["digest"])
    config = spec.parse_config(config_raw, f"config {cfg['digest']}")
    if strict and resolved.index_digest is None:
        _check_platform(r, want, config)
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(resolved.layers):
        raise DataError(f"manifest {resolved.manifest_digest}: {len(resolved.layers)} "
                        f"layers but the config lists {len(diff_ids)} diff_ids")
    downloaded = _pull.fetch_layers(repo, where, store, resolved.layers, diff_ids,
                                    _emitter(progress), MAX_DOWNLOADS)
    names = [] if r.digest else [str(r)]
    record = store.record_image(resolved.manifest_digest, resolved.manifest, config,
                                config_raw, names, repo_for_digest=r.name,
                                repo_digest=resolved.repo_digest)
    _emit(progress, "", f"Digest: {resolved.repo_digest}")
    return PullReport(str(r), record.id, resolved.repo_digest,
                      downloaded or not known, [d["digest"] for d in resolved.layers])


def _check_platform(r: _ref.Reference, want: dict[str, str], config: dict) -> None:
    have = {"os": config.get("os", ""), "architecture": config.get("architecture", ""),
            "variant": config.get("variant", "")}
    if have["os"] != want["os"] or have["architecture"] != want["architecture"] or (
            have["variant"] and want.get("variant") and have["variant"] != want["variant"]):
        raise NotFound(f"image with reference {r.familiar()} was found but does not match "
                       f"the specified platform: wanted {_mf.format_platform(want)}, "
                       f"actual: {_mf.format_platform(have)}")


def _store_bytes(content, data: bytes, dig: str) -> None:
    """Commit a small blob; a concurrent pull may have committed it first."""
    with content.writer(dig, dig, len(data)) as w:
        if not w.exists:
            w.truncate()
            w.write(data)
        w.commit()



# -- push -------------------------------------------------------------------------------------

def push_all_tags(ref: str, progress: Progress | None = None) -> list[PushReport]:
    """`push -a`: every local tag of `ref`'s repository, in tag order."""
    from ketch.engine import images as _images

    if ":" in ref.split("@")[0].rsplit("/", 1)[-1] or "@" in ref:
        raise InvalidArgument("tag can't be used with --all-tags/-a")
    r = _parse(ref)
    conn = db.connect()
    try:
        tags = sorted({t.tag for img in _images.store(conn).all() for t in
                       (_ref.parse(name) for name in img.repo_tags) if t.name == r.name})
    finally:
        conn.close()
    if not tags:
        raise NotFound(f"An image does not exist locally with the tag: {r.familiar_name()}")
    return [push(str(r.with_tag(t)), progress) for t in tags]


def push(ref: str, progress: Progress | None = None) -> PushReport:
    """Push a local image to the registry its name points at (HEAD, mount, or upload)."""
    r = _parse(ref)
    if r.digest:
        raise InvalidArgument(f"push {ref}: cannot push a digest reference")
    from ketch.engine import images as _images
    from ketch.oci import image_spec as spec

    conn = db.connect()
    repo = open_repository(r.domain, r.path)
    try:
        store = _images.store(conn)
        try:
            image = store.resolve(str(r))
        except NotFound:
            raise NotFound("An image does not exist locally with the tag: "
                           f"{r.familiar()}") from None
        content = store.content
        raw = content.read(image.manifest_digest)
        manifest = spec.parse_manifest(raw, f"manifest {image.manifest_digest}")
        media = manifest.get("mediaType") or image.manifest_media_type or spec.OCI_MANIFEST
        _emit(progress, "", f"The push refers to repository [{r.name}]")
        sources = _mount_sources(image.repo_digests, r)
        blobs = [manifest["config"], *manifest["layers"]]
        for desc in blobs:
            if not content.exists(desc["digest"]):
                raise DataError(f"push {r.familiar()}: blob {desc['digest']} is not in the "
                                "content store (run `ketch system check`)")
        with ThreadPoolExecutor(max_workers=max(1, MAX_UPLOADS),
                                thread_name_prefix="ketch-push") as pool:
            futures = [pool.submit(_push_blob, repo, content, d, sources, progress)
                       for d in reversed(blobs)]
            for f in futures:
                f.result()
        digest = repo.put_manifest(r.tag, raw, media)
        config_raw = content.read(manifest["config"]["digest"])
        store.record_image(image.manifest_digest, manifest, image.config, config_raw, [],
                           repo_for_digest=r.name)
        _emit(progress, "", f"{r.tag}: digest: {digest} size: {len(raw)}")
        return PushReport(str(r), r.tag, digest, len(raw))
    finally:
        conn.close()
        repo.t.close()


def _mount_sources(repo_digests: list[str], r: _ref.Reference) -> list[str]:
    """Other repositories of the same registry this image came from (mount candidates)."""
    out = []
    for rd in repo_digests:
        other = _ref.try_parse(rd.split("@", 1)[0])
        if other and other.domain == r.domain and other.path != r.path \
                and other.path not in out:
            out.append(other.path)
    return out


def _push_blob(repo, content, desc: dict, sources: list[str],
               progress: Progress | None) -> None:
    dig, size = desc["digest"], desc["size"]
    short = _digest.short(dig)
    if repo.blob_exists(dig):
        _emit(progress, short, "Layer already exists")
        return
    _emit(progress, short, "Preparing")
    upload_url = None
    for source in sources:
        got = repo.mount_blob(dig, source)
        if got is True:
            _emit(progress, short, f"Mounted from {source}")
            return
        upload_url = got
        break
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        _emit(progress, short, "Pushing", done[0], size)
    from ketch.registry.client import CHUNK_UPLOAD

    chunk = int(os.environ.get("KETCH_PUSH_CHUNK_SIZE") or CHUNK_UPLOAD)
    repo.upload_blob(desc, lambda: content.open(dig), tick, upload_url=upload_url,
                     chunk_size=chunk)
    _emit(progress, short, "Pushed")


# -- login / logout ---------------------------------------------------------------------------

def login(server: str | None, username: str, password: str) -> str:
    """Check the credentials against the registry, then store them; Docker's message."""
    domain = _server_domain(server)
    if not username or not password:
        raise InvalidArgument("login: username and password are required")
    repo = open_repository(domain, "", credentials=(username, password))
    try:
        repo.t.ping()
        ch = repo.t.auth.challenge
        if ch is not None and ch.scheme == "bearer":
            repo.t.auth.token(())  # the token server checks the password
        elif ch is not None:
            # Basic: an authenticated /v2/ must now answer 200.
            repo.t.request("GET", "/v2/", scopes=(), what=f"login to {domain}").close()
    finally:
        repo.t.close()
    _config.store_credentials(domain, username, password)
    return "Login Succeeded"


def logout(server: str | None) -> str:
    domain = _server_domain(server)
    if not _config.erase_credentials(domain):
        return f"Not logged in to {domain}"
    return f"Removing login credentials for {domain}"


def _server_domain(server: str | None) -> str:
    if not server:
        return "docker.io"
    host = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if not host:
        raise InvalidArgument(f"invalid registry address {server!r}")
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host
