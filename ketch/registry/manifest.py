"""Manifests as a registry client sees them: media types, platforms, resolution.

A tag may name an image manifest (OCI or Docker schema 2) or an index /
manifest list; `select_platform` walks an index to the manifest for one
platform, matching as containerd does: os and architecture must be equal;
a variant asked for must be equal, and when none is asked for, the host's
default variant (arm64 -> v8) or no variant is taken first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ketch.errors import DataError, InvalidArgument, NotFound
from ketch.oci import image_spec as spec

#: Docker schema 1 is refused with a clear message (deprecated since 2017).
SCHEMA1 = {"application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws"}
ACCEPT = ", ".join([spec.OCI_INDEX, spec.DOCKER_LIST, spec.OCI_MANIFEST, spec.DOCKER_MANIFEST])
#: Registries may refuse larger manifests; a bigger answer is garbage, not an image.
MAX_MANIFEST = 4 << 20

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "i386": "386"}


def parse_platform(value: str | None) -> dict[str, str]:
    """`--platform os/arch[/variant]` (or None for the host's) -> image-spec platform."""
    if not value:
        return spec.host_platform()
    parts = value.strip().lower().split("/")
    if len(parts) == 1 and parts[0] != "linux":
        parts = ["linux", parts[0]]
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {value!r}: want os/arch[/variant]")
    out = {"os": parts[0], "architecture": _ARCH_ALIASES.get(parts[1], parts[1])}
    if len(parts) == 3:
        out["variant"] = parts[2]
    elif out["architecture"] == "arm64":
        out["variant"] = "v8"
    return out


def format_platform(p: dict[str, Any]) -> str:
    return "/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k))


def media_type_of(data: bytes, content_type: str | None) -> str:
    """The manifest's media type: its own mediaType field, else the Content-Type."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError("manifest is not a JSON object")
    media = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
    if not media or media in ("application/json", "text/plain"):
        # OCI allows mediaType to be absent: tell the kinds apart by shape.
        media = spec.OCI_INDEX if "manifests" in doc else spec.OCI_MANIFEST
    if media in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise DataError("Docker image manifest schema 1 is not supported (deprecated); "
                        "push the image again with a current client")
    if media not in spec.MANIFESTS | spec.INDEXES:
        raise DataError(f"unknown manifest media type {media!r}")
    return media


def select_platform(index: dict[str, Any], want: dict[str, str]) -> dict[str, Any]:
    """The descriptor in `index` for platform `want`; NotFound naming it if none."""
    candidates = []
    for desc in index.get("manifests", []):
        if desc.get("mediaType") not in spec.MANIFESTS | {None}:
            continue  # nested indexes and attestations are not images for a platform
        p = desc.get("platform") or {}
        if p.get("os") != want["os"] or p.get("architecture") != want["architecture"]:
            continue
        variant = p.get("variant")
        if want.get("variant"):
            if variant and variant != want["variant"]:
                continue
            rank = 0 if variant == want["variant"] else 1
        else:
            rank = 0 if not variant else 1
        candidates.append((rank, len(candidates), desc))
    if not candidates:
        raise NotFound(f"no matching manifest for {format_platform(want)} "
                       "in the manifest list entries")
    return min(candidates, key=lambda c: (c[0], c[1]))[2]


def platforms_of(index: dict[str, Any]) -> list[str]:
    return [format_platform(d.get("platform") or {}) for d in index.get("manifests", [])]


@dataclass
class Resolved:
    """What a reference resolved to: the image manifest for one platform.

    `index_*` are set when the reference named an index (the digest Docker
    shows as the image's RepoDigest is then the index's).
    """

    manifest: dict[str, Any]
    manifest_bytes: bytes
    manifest_digest: str
    media_type: str
    index_bytes: bytes | None = None
    index_digest: str | None = None
    index_media_type: str | None = None

    @property
    def repo_digest(self) -> str:
        return self.index_digest or self.manifest_digest

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("layers", []))

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]
