"""Uploads against httpx.MockTransport: monolithic, chunked, mount, HEAD."""

from __future__ import annotations

import hashlib
import io

import httpx

from ketch.registry.client import Repository
from ketch.registry.transport import Transport


def _repo(handler) -> Repository:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Repository(Transport("127.0.0.1:5000", credentials=None, backoff=0, client=client),
                      "lib/app")


def _desc(data: bytes) -> dict:
    return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_monolithic_upload_is_post_then_one_put():
    data = b"a" * 1000
    calls = []

    def handler(req):
        calls.append((req.method, req.url.path, dict(req.url.params), req.read()))
        if req.method == "POST":
            return httpx.Response(202, headers={"location": "/v2/lib/app/blobs/uploads/u1?_state=s"})
        return httpx.Response(201) if req.method == "PUT" else httpx.Response(200)
    _repo(handler).upload_blob(_desc(data), lambda: io.BytesIO(data))
    post, put = calls[-2:]
    assert post[:2] == ("POST", "/v2/lib/app/blobs/uploads/")
    assert put[0] == "PUT" and put[1] == "/v2/lib/app/blobs/uploads/u1"
    assert put[2] == {"_state": "s", "digest": _desc(data)["digest"]}
    assert put[3] == data


def test_chunked_upload_patches_with_content_range_and_follows_location():
    data = bytes(range(256)) * 10  # 2560 bytes, chunks of 1000
    patches, puts = [], []

    def handler(req):
        if req.method == "POST":
            return httpx.Response(202, headers={"location": "/up/0"})
        if req.method == "PATCH":
            patches.append((req.url.path, req.headers["content-range"], req.read()))
            return httpx.Response(202, headers={"location": f"/up/{len(patches)}"})
        if req.method == "PUT":
            puts.append((req.url.path, req.read()))
            return httpx.Response(201)
        return httpx.Response(200)
    _repo(handler).upload_blob(_desc(data), lambda: io.BytesIO(data), chunk_size=1000)
    assert [(p, r) for p, r, _ in patches] == [("/up/0", "0-999"), ("/up/1", "1000-1999"),
                                                ("/up/2", "2000-2559")]
    assert b"".join(b for *_, b in patches) == data
    assert puts == [("/up/3", b"")]


def test_mount_201_means_mounted_202_gives_upload_url():
    answers = iter([httpx.Response(201),
                    httpx.Response(202, headers={"location": "/v2/lib/app/blobs/uploads/x"})])

    def handler(req):
        if req.url.path == "/v2/":
            return httpx.Response(200)
        assert req.url.params["from"] == "lib/base"
        return next(answers)
    repo = _repo(handler)
    assert repo.mount_blob("sha256:" + "a" * 64, "lib/base") is True
    assert repo.mount_blob("sha256:" + "a" * 64, "lib/base") == \
        f"{repo.t.base}/v2/lib/app/blobs/uploads/x"


def test_head_before_upload():
    def handler(req):
        if req.url.path == "/v2/":
            return httpx.Response(200)
        assert req.method == "HEAD"
        return httpx.Response(200 if req.url.path.endswith("a" * 64) else 404)
    repo = _repo(handler)
    assert repo.blob_exists("sha256:" + "a" * 64)
    assert not repo.blob_exists("sha256:" + "b" * 64)
