"""Transport and Repository against httpx.MockTransport (the true external boundary)."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from ketch.errors import DataError, NotFound, Unauthorized, Unavailable
from ketch.registry.client import Repository
from ketch.registry.manifest import parse_platform, select_platform
from ketch.registry.transport import Transport

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _repo(handler, host="127.0.0.1:5000", credentials=None, retries=3) -> Repository:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    t = Transport(host, credentials=credentials, retries=retries, backoff=0, client=client)
    return Repository(t, "lib/app")


class FakeWriter:
    def __init__(self, data=b""):
        self.buf = bytearray(data)

    @property
    def offset(self):
        return len(self.buf)

    def write(self, b):
        self.buf += b

    def truncate(self):
        self.buf.clear()


def test_https_first_then_plain_http_for_loopback():
    seen = []

    def handler(req):
        seen.append(req.url.scheme)
        if req.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER]")
        return httpx.Response(200, json={"tags": ["a"]} if "tags" in req.url.path else {})
    repo = _repo(handler)
    assert repo.tags() == ["a"]
    assert seen[:2] == ["https", "http"]
    assert repo.t.base == "http://127.0.0.1:5000"


def test_no_plain_http_for_a_remote_registry():
    def handler(req):
        raise httpx.ConnectError("[SSL] handshake failed")
    repo = _repo(handler, host="registry.example")
    with pytest.raises(Unavailable, match="cannot reach registry registry.example"):
        repo.tags()


def test_retries_5xx_then_succeeds():
    count = {"n": 0}

    def handler(req):
        if req.url.path == "/v2/":
            return httpx.Response(200)
        count["n"] += 1
        return httpx.Response(503) if count["n"] < 3 else httpx.Response(200, json={"tags": []})
    assert _repo(handler).tags() == []
    assert count["n"] == 3


def test_5xx_after_all_retries_is_unavailable():
    def handler(req):
        return httpx.Response(200) if req.url.path == "/v2/" else httpx.Response(500)
    with pytest.raises(Unavailable, match="answered 500"):
        _repo(handler).tags()


def test_bearer_401_retry_with_new_scope_token():
    tokens = []

    def handler(req):
        if req.url.path == "/token":
            tokens.append(req.url.params.get_list("scope"))
            return httpx.Response(200, json={"token": f"t{len(tokens)}"})
        challenge = 'Bearer realm="http://127.0.0.1:5000/token",service="s"'
        if req.headers.get("authorization") != "Bearer t2" and req.url.path != "/v2/":
            if req.headers.get("authorization") == "Bearer t1":
                return httpx.Response(401, headers={"www-authenticate": challenge + ',error="x"'})
            return httpx.Response(401, headers={"www-authenticate": challenge})
        if req.url.path == "/v2/":
            return httpx.Response(401, headers={"www-authenticate": challenge})
        return httpx.Response(200, json={"tags": ["ok"]})
    assert _repo(handler).tags() == ["ok"]
    assert tokens == [["repository:lib/app:pull"], ["repository:lib/app:pull"]]


def test_registry_error_body_becomes_one_line():
    def handler(req):
        if req.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN",
                                                     "message": "manifest unknown"}]})
    with pytest.raises(NotFound) as err:
        _repo(handler).get_manifest("nope")
    assert str(err.value) == "manifest for 127.0.0.1:5000/lib/app:nope not found: manifest unknown"


def test_denied_is_unauthorized():
    def handler(req):
        if req.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "no"}]})
    with pytest.raises(Unauthorized, match="unauthorized: no"):
        _repo(handler).get_manifest("x")


def test_manifest_by_digest_is_verified():
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()
    wrong = "sha256:" + "1" * 64

    def handler(req):
        return httpx.Response(200, content=body, headers={"content-type": OCI_MANIFEST})
    with pytest.raises(DataError, match="digest mismatch"):
        _repo(handler).get_manifest(wrong)


def test_unknown_and_schema1_media_types_are_refused():
    answers = [({"schemaVersion": 2, "mediaType": "application/x-weird"}, "unknown manifest media"),
               ({"schemaVersion": 1, "fsLayers": []}, "schema 1 is not supported")]
    for doc, msg in answers:
        def handler(req, doc=doc):
            return httpx.Response(200, content=json.dumps(doc).encode())
        with pytest.raises(DataError, match=msg):
            _repo(handler).get_manifest("latest")


def test_garbage_manifest_is_a_data_error():
    def handler(req):
        return httpx.Response(200, content=b"\x00\xffnot json")
    with pytest.raises(DataError, match="not JSON"):
        _repo(handler).get_manifest("latest")


def test_fetch_blob_resumes_with_range_after_a_cut():
    blob = bytes(range(256)) * 4000
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ranges = []

    def handler(req):
        if req.url.path == "/v2/":
            return httpx.Response(200)
        rng = req.headers.get("range")
        ranges.append(rng)
        if rng is None:
            # first answer: only part of the body, as from a dropped connection
            def cut():
                yield blob[:100_000]
                raise httpx.ReadError("connection reset")
            return httpx.Response(200, content=cut())
        start = int(rng.split("=")[1].rstrip("-"))
        return httpx.Response(206, content=iter([blob[start:]]),
                              headers={"content-range": f"bytes {start}-{len(blob)-1}/{len(blob)}"})
    w = FakeWriter()
    _repo(handler).fetch_blob({"digest": digest, "size": len(blob)}, w)
    assert bytes(w.buf) == blob
    assert ranges == [None, "bytes=100000-"]


def test_fetch_blob_starts_over_when_range_is_ignored():
    blob = b"x" * 5000

    def handler(req):
        return httpx.Response(200, content=iter([blob]))
    w = FakeWriter(b"x" * 1000)
    _repo(handler).fetch_blob({"digest": "sha256:" + "0" * 64, "size": len(blob)}, w)
    assert bytes(w.buf) == blob


def test_truncated_blob_is_an_error_not_a_hang():
    def handler(req):
        return httpx.Response(200, content=iter([b"short"])) if req.url.path != "/v2/" \
            else httpx.Response(200)
    with pytest.raises(DataError, match="truncated, registry sent 5 of 100 bytes"):
        _repo(handler).fetch_blob({"digest": "sha256:" + "0" * 64, "size": 100}, FakeWriter())


def test_platform_selection():
    index = {"manifests": [
        {"mediaType": OCI_MANIFEST, "digest": "a", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"mediaType": OCI_MANIFEST, "digest": "b", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"mediaType": OCI_MANIFEST, "digest": "c", "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": "d", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]}
    assert select_platform(index, parse_platform("linux/arm/v7"))["digest"] == "b"
    assert select_platform(index, parse_platform("linux/amd64"))["digest"] == "c"
    assert select_platform(index, parse_platform("linux/arm64"))["digest"] == "d"
    assert select_platform(index, parse_platform("x86_64"))["digest"] == "c"
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        select_platform(index, parse_platform("linux/s390x"))


def test_429_honours_retry_after(monkeypatch):
    slept = []
    monkeypatch.setattr("ketch.registry.transport.time.sleep", slept.append)
    answers = iter([httpx.Response(429, headers={"retry-after": "2"}),
                    httpx.Response(503, headers={"retry-after": "3600"}),
                    httpx.Response(200, json={"tags": ["t"]})])

    def handler(req):
        return httpx.Response(200) if req.url.path == "/v2/" else next(answers)
    assert _repo(handler).tags() == ["t"]
    assert slept == [2.0, 10.0]  # honoured, and capped
