"""image-spec 1.1 and Docker schema 2 as data: media types, descriptors, and checks.

Manifests, indexes and configs stay plain dicts (they round-trip byte for
byte through the content store, and their digests are of those bytes); this
module names the media types and validates the fields ketch relies on.
"""

from __future__ import annotations

import json

from ketch.errors import DataError
from ketch.oci import digest as _digest

TYPE_CHECKING = False  # typing costs every `ketch images` and `ketch run` ~4 ms
if TYPE_CHECKING:
    from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFESTS = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEXES = {OCI_INDEX, DOCKER_LIST}
CONFIGS = {OCI_CONFIG, DOCKER_CONFIG}
LAYERS = {
    OCI_LAYER: "tar", OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST_GZIP: "gzip", "application/vnd.oci.image.layer.nondistributable.v1.tar": "tar",
    DOCKER_LAYER: "tar", DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_FOREIGN: "gzip",
}
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> dict[str, str]:
    import platform

    machine = platform.machine()
    out = {"os": "linux", "architecture": _GOARCH.get(machine, machine)}
    if machine == "armv7l":
        out["variant"] = "v7"
    elif machine == "aarch64":
        out["variant"] = "v8"
    return out


def canonical(obj: Any) -> bytes:
    """Stable JSON bytes for a document ketch writes (sorted keys, compact)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def descriptor(media_type: str, data_digest: str, size: int, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "digest": data_digest, "size": size}
    out.update({k: v for k, v in extra.items() if v})
    return out


def compression_of(media_type: str) -> str:
    """'tar', 'gzip' or 'zstd' for a layer media type; DataError for anything else."""
    kind = LAYERS.get(media_type)
    if kind is None:
        raise DataError(f"unknown layer media type {media_type!r}")
    return kind


def check_descriptor(desc: Any, what: str) -> dict[str, Any]:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str) \
            or not isinstance(desc.get("size"), int) or desc["size"] < 0:
        raise DataError(f"{what}: malformed descriptor {desc!r:.120}")
    if not _digest.is_digest(desc["digest"]):
        raise DataError(f"{what}: bad digest {desc['digest']!r}")
    return desc


def parse_manifest(data: bytes, where: str = "manifest") -> dict[str, Any]:
    """Decode and check an image manifest (OCI or Docker schema 2)."""
    doc = _json(data, where)
    media = doc.get("mediaType") or (OCI_MANIFEST if "config" in doc else None)
    if media not in MANIFESTS:
        raise DataError(f"{where}: unknown media type {media!r}")
    check_descriptor(doc.get("config"), f"{where} config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise DataError(f"{where}: no layers list")
    for i, layer in enumerate(layers):
        check_descriptor(layer, f"{where} layer {i}")
        compression_of(layer.get("mediaType", ""))
    return doc


def parse_index(data: bytes, where: str = "index") -> dict[str, Any]:
    doc = _json(data, where)
    if not isinstance(doc.get("manifests"), list):
        raise DataError(f"{where}: no manifests list")
    for i, m in enumerate(doc["manifests"]):
        check_descriptor(m, f"{where} manifest {i}")
    return doc


def parse_config(data: bytes, where: str = "image config") -> dict[str, Any]:
    doc = _json(data, where)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise DataError(f"{where}: no rootfs.diff_ids")
    for d in rootfs["diff_ids"]:
        if not isinstance(d, str) or not _digest.is_digest(d):
            raise DataError(f"{where}: bad diff_id {d!r}")
    return doc


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{where}: not a JSON object")
    return doc


def pick_platform(index: dict[str, Any], want: dict[str, str] | None = None) -> dict[str, Any]:
    """The manifest descriptor of `index` matching `want` (default: the host)."""
    want = want or host_platform()
    for m in index.get("manifests", []):
        p = m.get("platform") or {}
        if p.get("os") == want.get("os") and p.get("architecture") == want.get("architecture"):
            if want.get("variant") and p.get("variant") and p["variant"] != want["variant"]:
                continue
            return m
    wanted = "/".join(v for v in (want.get("os"), want.get("architecture"), want.get("variant")) if v)
    raise DataError(f"no manifest for platform {wanted} in the index")
