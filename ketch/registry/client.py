"""The distribution-spec 1.1 operations on one repository of one registry.

    Repository(transport, "library/busybox")
        .resolve(ref, platform)          tag or digest -> Resolved (index walked to one platform)
        .get_manifest / .head_manifest   raw manifests, digest checked
        .tags()                          /tags/list, following Link pagination
        .fetch_blob(desc, writer)        GET with Range resume into a content-store writer
        .blob_exists / .mount_blob       HEAD before upload; cross-repository mount
        .upload_blob(desc, opener)       monolithic (POST + PUT) or chunked (PATCH...PUT)
        .put_manifest(ref, data, type)

Everything fetched is checked against the digest that named it; a
manifest fetched by tag is checked against Docker-Content-Digest when the
registry sends one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from ketch.errors import DataError, NotFound
from ketch.oci import digest as _digest
from ketch.oci import image_spec as spec
from ketch.registry import manifest as mf
from ketch.registry.auth import repository_scope
from ketch.registry.transport import Transport

_CHUNK = 1 << 20
#: Blobs above this size are uploaded in chunks of this size (PATCH ... PUT).
CHUNK_UPLOAD = 32 << 20
Progress = Callable[[int], None]


class Repository:
    def __init__(self, transport: Transport, name: str):
        self.t = transport
        self.name = name
        self.pull_scope = (repository_scope(name, "pull"),)
        self.push_scope = (repository_scope(name, "pull", "push"),)

    def _path(self, kind: str, ref: str = "") -> str:
        return f"/v2/{self.name}/{kind}/{ref}"

    # -- manifests ----------------------------------------------------------------------

    def get_manifest(self, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of the manifest `ref` (tag or digest)."""
        what = f"manifest for {self.t.registry}/{self.name}{_sep(ref)}{ref}"
        try:
            resp = self.t.request("GET", self._path("manifests", ref), scopes=self.pull_scope,
                                  what=what, headers={"Accept": mf.ACCEPT}, stream=True)
        except NotFound as exc:
            detail = str(exc).removeprefix(what + ": ")
            raise NotFound(f"{what} not found: {detail}") from None
        try:
            data = _read_limited(resp, mf.MAX_MANIFEST, what)
        finally:
            resp.close()
        digest = _digest.of_bytes(data)
        if _digest.is_digest(ref):
            if _hash_as(ref, data) != ref:
                raise DataError(f"{what}: digest mismatch, content hashes to {digest}")
            digest = ref
        else:
            sent = resp.headers.get("docker-content-digest")
            if sent and _digest.is_digest(sent) and _hash_as(sent, data) != sent:
                raise DataError(f"{what}: registry says {sent} but content hashes to {digest}")
        try:
            media = mf.media_type_of(data, resp.headers.get("content-type"))
        except DataError as exc:
            raise DataError(f"{what}: {exc}") from None
        return data, media, digest

    def head_manifest(self, ref: str) -> str | None:
        """The digest `ref` names now, or None if the registry does not know it."""
        what = f"manifest for {self.t.registry}/{self.name}{_sep(ref)}{ref}"
        resp = self.t.request("HEAD", self._path("manifests", ref), scopes=self.pull_scope,
                              what=what, headers={"Accept": mf.ACCEPT}, ok=(200, 404))
        resp.close()
        return resp.headers.get("docker-content-digest") if resp.status_code == 200 else None

    def resolve(self, ref: str, platform: dict[str, str]) -> mf.Resolved:
        data, media, digest = self.get_manifest(ref)
        if media in spec.INDEXES:
            index = spec.parse_index(data, f"index {digest}")
            desc = mf.select_platform(index, platform)
            mdata, mmedia, mdigest = self.get_manifest(desc["digest"])
            if mmedia not in spec.MANIFESTS:
                raise DataError(f"manifest {mdigest}: unexpected media type {mmedia!r}")
            doc = spec.parse_manifest(mdata, f"manifest {mdigest}")
            return mf.Resolved(doc, mdata, mdigest, mmedia, data, digest, media)
        doc = spec.parse_manifest(data, f"manifest {digest}")
        return mf.Resolved(doc, data, digest, media)

    def put_manifest(self, ref: str, data: bytes, media_type: str) -> str:
        what = f"push manifest {self.t.registry}/{self.name}{_sep(ref)}{ref}"
        resp = self.t.request("PUT", self._path("manifests", ref), scopes=self.push_scope,
                              what=what, headers={"Content-Type": media_type}, content=data,
                              ok=(201, 200, 202))
        resp.close()
        digest = _digest.of_bytes(data)
        sent = resp.headers.get("docker-content-digest")
        if sent and sent != digest:
            raise DataError(f"{what}: registry stored {sent}, expected {digest}")
        return digest

    def tags(self) -> list[str]:
        out: list[str] = []
        path: str | None = f"/v2/{self.name}/tags/list"
        while path:
            resp = self.t.request("GET", path, scopes=self.pull_scope,
                                  what=f"list tags of {self.t.registry}/{self.name}")
            try:
                body = json.loads(resp.read())
                out.extend(body.get("tags") or [])
            except (ValueError, AttributeError, TypeError) as exc:
                raise DataError(f"list tags of {self.name}: answer is not a tag list") from exc
            finally:
                resp.close()
            path = _next_link(resp.headers.get("link"))
        return out

    # -- blobs: download ------------------------------------------------------------------

    def fetch_blob(self, desc: dict[str, Any], writer, progress: Progress | None = None) -> None:
        """Download `desc` into a content-store writer, resuming at `writer.offset`.

        A broken connection is resumed with a Range request from where it
        stopped; a server that ignores Range (200 instead of 206) makes the
        writer start over. The writer verifies size and digest on commit.
        """
        digest, size = desc["digest"], desc["size"]
        what = f"blob {digest}"
        if progress and writer.offset:
            progress(writer.offset)
        failures = 0
        while writer.offset < size:
            start = writer.offset
            headers = {"Range": f"bytes={start}-"} if start else {}
            resp = self.t.request("GET", self._path("blobs", digest), scopes=self.pull_scope,
                                  what=what, headers=headers, stream=True,
                                  ok=(200, 206, 416))
            try:
                if resp.status_code == 416:
                    raise DataError(f"{what}: truncated, registry has fewer than the "
                                    f"{size} bytes the manifest promises")
                if start and resp.status_code == 200:
                    writer.truncate()
                    if progress:
                        progress(-start)
                elif start and not resp.headers.get("content-range", "").startswith(
                        f"bytes {start}-"):
                    raise DataError(f"{what}: registry answered the wrong range "
                                    f"{resp.headers.get('content-range')!r}")
                for chunk in resp.iter_raw():
                    writer.write(chunk)
                    if progress:
                        progress(len(chunk))
            except httpx.TransportError as exc:
                failures += 1
                if failures >= self.t.retries:
                    raise DataError(f"{what}: download failed at byte {writer.offset} "
                                    f"of {size}: {exc or type(exc).__name__}") from exc
                continue
            finally:
                resp.close()
            if writer.offset < size:
                failures += 1
                if failures >= self.t.retries:
                    raise DataError(f"{what}: truncated, registry sent {writer.offset} "
                                    f"of {size} bytes")

    # -- blobs: upload --------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        resp = self.t.request("HEAD", self._path("blobs", digest), scopes=self.push_scope,
                              what=f"check blob {digest}", ok=(200, 404))
        resp.close()
        return resp.status_code == 200

    def mount_blob(self, digest: str, source: str) -> bool | str:
        """Ask for `digest` to be mounted from repository `source` (same registry).

        True if the registry mounted it; else the upload URL it opened instead.
        """
        scopes = self.push_scope + (repository_scope(source, "pull"),)
        resp = self.t.request("POST", self._path("blobs", "uploads") + "/",
                              params={"mount": digest, "from": source}, scopes=scopes,
                              what=f"mount blob {digest} from {source}", ok=(201, 202))
        resp.close()
        if resp.status_code == 201:
            return True
        return self._location(resp)

    def upload_blob(self, desc: dict[str, Any], opener: Callable[[], BinaryIO],
                    progress: Progress | None = None, *, upload_url: str | None = None,
                    chunk_size: int = CHUNK_UPLOAD) -> None:
        """Upload a blob: one PUT if it fits in a chunk, else PATCH chunks then PUT."""
        digest, size = desc["digest"], desc["size"]
        what = f"upload blob {digest}"
        url = upload_url or self._start_upload(what)
        if size > chunk_size:
            with opener() as f:
                offset = 0
                while offset < size:
                    data = f.read(chunk_size)
                    if not data:
                        raise DataError(f"{what}: source ended at {offset} of {size} bytes")
                    hdrs = {"Content-Type": "application/octet-stream",
                            "Content-Range": f"{offset}-{offset + len(data) - 1}",
                            "Content-Length": str(len(data))}
                    resp = self.t.request("PATCH", url, scopes=self.push_scope, what=what,
                                          headers=hdrs, content=data, ok=(202,))
                    resp.close()
                    url = self._location(resp)
                    offset += len(data)
                    if progress:
                        progress(len(data))
            body: Any = b""
        else:
            def body() -> Any:
                return _file_chunks(opener, progress)
        resp = self.t.request("PUT", _with_query(url, digest=digest), scopes=self.push_scope,
                              what=what, content=body,
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Length": str(0 if size > chunk_size else size)},
                              ok=(201, 204))
        resp.close()

    def _start_upload(self, what: str) -> str:
        resp = self.t.request("POST", self._path("blobs", "uploads") + "/",
                              scopes=self.push_scope, what=what, ok=(202,))
        resp.close()
        return self._location(resp)

    def _location(self, resp: httpx.Response) -> str:
        loc = resp.headers.get("location")
        if not loc:
            raise DataError(f"registry {self.t.registry} sent no upload Location")
        return str(resp.url.join(loc))


def _sep(ref: str) -> str:
    return "@" if _digest.is_digest(ref) else ":"


def _hash_as(digest: str, data: bytes) -> str:
    algo = digest.split(":", 1)[0]
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    buf = bytearray()
    try:
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > limit:
                raise DataError(f"{what}: larger than {limit} bytes, refusing it")
    except httpx.HTTPError as exc:
        raise DataError(f"{what}: reading the answer failed: {exc}") from exc
    return bytes(buf)


def _file_chunks(opener: Callable[[], BinaryIO], progress: Progress | None):
    with opener() as f:
        while data := f.read(_CHUNK):
            if progress:
                progress(len(data))
            yield data


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _next_link(link: str | None) -> str | None:
    """The target of `Link: </v2/...?last=x&n=y>; rel="next"`, if any."""
    if not link:
        return None
    for part in link.split(","):
        target, _, rel = part.partition(";")
        if 'rel="next"' in rel.replace(" ", "") or "rel=next" in rel.replace(" ", ""):
            return target.strip().strip("<>")
    return None

