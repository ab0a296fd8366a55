"""Reference normalisation and digest parsing, checked against Docker's rules."""

from __future__ import annotations

import pytest

from ketch.errors import InvalidArgument
from ketch.oci import digest, reference

HEX = "a" * 64


@pytest.mark.parametrize("given,full,familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest"),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
    ("quay.io/a/b", "quay.io/a/b:latest", "quay.io/a/b:latest"),
    ("Registry/app", "Registry/app:latest", "Registry/app:latest"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}",
     f"busybox@sha256:{HEX}"),
    (f"host:5000/x:tag@sha256:{HEX}", f"host:5000/x:tag@sha256:{HEX}",
     f"host:5000/x:tag@sha256:{HEX}"),
    ("a-b__c/e_f", "docker.io/a-b__c/e_f:latest", "a-b__c/e_f:latest"),
])
def test_normalise(given, full, familiar):
    ref = reference.parse(given)
    assert str(ref) == full
    assert ref.familiar() == familiar


@pytest.mark.parametrize("bad", [
    "", " busybox", "BusyBox", "busybox:", "busybox:-bad", ":tag", "a//b", "a/../b",
    "busybox@sha256:abc", "busybox@md5:" + "a" * 32, HEX, "bad_-name", "x:" + "t" * 129,
    "host:port/x",
])
def test_refused(bad):
    with pytest.raises(InvalidArgument):
        reference.parse(bad)


def test_uppercase_repository_message():
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        reference.parse("docker.io/Library/busybox")


def test_name_and_tag_parts():
    ref = reference.parse("localhost:5000/team/app:2")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "team/app", "2", None)
    assert ref.familiar_name() == "localhost:5000/team/app"
    assert reference.parse(f"app@sha256:{HEX}").tag is None
    assert reference.parse("app", default_tag=False).tag is None


def test_digest_parse_and_hash():
    assert digest.of_bytes(b"") == ("sha256:e3b0c44298fc1c149afbf4c8996fb924"
                                    "27ae41e4649b934ca495991b7852b855")
    assert digest.parse(f"sha256:{HEX}") == ("sha256", HEX)
    assert digest.short(f"sha256:{HEX}") == HEX[:12]
    for bad in ("sha256:" + "A" * 64, "sha256:abc", "nope", "sha1:" + "a" * 40, "sha256:"):
        assert not digest.is_digest(bad)
        with pytest.raises(InvalidArgument):
            digest.parse(bad)
    d = digest.Digester()
    d.update(b"ab")
    d.update(b"c")
    assert d.digest() == digest.of_bytes(b"abc") and d.size == 3


def test_chain_ids_follow_image_spec():
    a, b = digest.of_bytes(b"a"), digest.of_bytes(b"b")
    assert digest.chain_ids([]) == []
    assert digest.chain_ids([a]) == [a]
    assert digest.chain_ids([a, b]) == [a, digest.of_bytes(f"{a} {b}".encode())]
