"""OCI distribution-spec 1.1 client: resolve, pull and push blobs and manifests.

    config.py     credentials file (Docker's config.json format), insecure registries
    auth.py       WWW-Authenticate challenges, Basic, Bearer tokens and their cache
    transport.py  one registry over httpx: scheme, auth, retries, error mapping
    manifest.py   media types, platform parsing and selection
    client.py     the repository operations (manifests, tags, blob download/upload, mount)

`open_repository(domain, path)` is the entry point; the engine
(engine/distribution.py) composes it with the image store.
"""

from __future__ import annotations

import sys

# httpx's package __init__ imports its own command-line tool (httpx._main:
# click, rich, pygments) whenever those are installed, which costs more than
# httpx itself; ketch never runs that tool. A None entry makes that import
# fail, and httpx then defines a stub instead.
sys.modules.setdefault("httpx._main", None)

#: Where Docker Hub's API lives (references say docker.io).
DOCKER_HUB_API = "registry-1.docker.io"


def endpoint(domain: str) -> str:
    """The host[:port] to talk to for a reference's domain."""
    return DOCKER_HUB_API if domain in ("docker.io", "index.docker.io") else domain


def open_repository(domain: str, path: str, **transport_options):
    """A client.Repository for `domain`/`path` with its own Transport."""
    from ketch.registry.client import Repository
    from ketch.registry.transport import Transport

    return Repository(Transport(endpoint(domain), **transport_options), path)
