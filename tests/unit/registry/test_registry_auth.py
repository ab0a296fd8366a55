"""Challenge parsing, scopes, the token cache, and the credentials file."""

from __future__ import annotations

import base64
import json

import pytest

from ketch.errors import DataError, Unauthorized
from ketch.registry import config
from ketch.registry.auth import Authenticator, merge_scopes, parse_challenges


def test_parse_bearer_challenge_with_quoted_commas():
    [ch] = parse_challenges('Bearer realm="https://auth.example/token",service="reg.example",'
                            'scope="repository:a/b:pull,push",error="insufficient_scope"')
    assert ch.scheme == "bearer"
    assert ch.realm == "https://auth.example/token"
    assert ch.params["scope"] == "repository:a/b:pull,push"
    assert ch.params["error"] == "insufficient_scope"


def test_parse_two_challenges_and_basic():
    chs = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://x/t"')
    assert [c.scheme for c in chs] == ["basic", "bearer"]
    assert chs[0].realm == "Registry Realm"
    assert chs[1].realm == "https://x/t"


def test_merge_scopes_unions_actions_per_repository():
    got = merge_scopes(["repository:a:pull", "repository:a:push", "repository:b:pull"])
    assert got == ("repository:a:pull,push", "repository:b:pull")


def _auth(answers, credentials=None):
    calls = []

    def fetch(realm, params, basic):
        calls.append((realm, params, basic))
        return answers.pop(0)
    a = Authenticator("reg.example", credentials, fetch)
    a.learn('Bearer realm="https://auth.example/token",service="reg"')
    return a, calls


def test_token_is_cached_and_reused_for_covered_scopes():
    a, calls = _auth([{"token": "T1", "expires_in": 300}, {"token": "T2"}])
    assert a.header(("repository:x:pull,push",)) == "Bearer T1"
    # pull alone is covered by the pull,push token: no new request.
    assert a.header(("repository:x:pull",)) == "Bearer T1"
    assert len(calls) == 1
    assert calls[0][1] == [("service", "reg"), ("scope", "repository:x:pull,push")]
    # another repository is not covered.
    assert a.header(("repository:y:pull",)) == "Bearer T2"
    assert len(calls) == 2


def test_token_request_sends_credentials_as_basic():
    a, calls = _auth([{"access_token": "A"}], credentials=("bob", "pw"))
    assert a.header(("repository:x:pull",)) == "Bearer A"
    realm, params, basic = calls[0]
    assert ("account", "bob") in params
    assert basic == "Basic " + base64.b64encode(b"bob:pw").decode()


def test_expired_token_is_fetched_again(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("ketch.registry.auth.time.monotonic", lambda: clock[0])
    a, calls = _auth([{"token": "T1", "expires_in": 60}, {"token": "T2", "expires_in": 60}])
    assert a.header(("repository:x:pull",)) == "Bearer T1"
    clock[0] += 45  # still valid (refreshed 10 s before the server's expiry)
    assert a.header(("repository:x:pull",)) == "Bearer T1"
    clock[0] += 10
    assert a.header(("repository:x:pull",)) == "Bearer T2"
    assert len(calls) == 2


def test_token_answer_without_token_is_a_data_error():
    a, _ = _auth([{"nothing": 1}])
    with pytest.raises(DataError, match="carries no token"):
        a.header(("repository:x:pull",))


def test_basic_challenge_without_credentials_says_login():
    a = Authenticator("reg.example", None, lambda *a: {})
    a.learn('Basic realm="r"')
    with pytest.raises(Unauthorized, match="ketch login reg.example"):
        a.header(())


def test_credentials_round_trip_in_docker_format(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_CONFIG", str(tmp_path / "k"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    path = config.store_credentials("reg.example:5000", "bob", "s3:cret")
    data = json.loads(path.read_text())
    assert data["auths"]["reg.example:5000"]["auth"] == base64.b64encode(b"bob:s3:cret").decode()
    assert path.stat().st_mode & 0o777 == 0o600
    assert config.get_credentials("reg.example:5000") == ("bob", "s3:cret")
    assert config.erase_credentials("reg.example:5000") is True
    assert config.get_credentials("reg.example:5000") is None
    assert config.erase_credentials("reg.example:5000") is False


def test_docker_hub_key_and_docker_config_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_CONFIG", str(tmp_path / "k"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    (tmp_path / "d").mkdir()
    auth = base64.b64encode(b"carol:pw").decode()
    (tmp_path / "d" / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}}))
    assert config.get_credentials("docker.io") == ("carol", "pw")
    # ketch's own file wins over Docker's.
    config.store_credentials("docker.io", "dave", "pw2")
    assert config.get_credentials("docker.io") == ("dave", "pw2")
    assert "https://index.docker.io/v1/" in json.loads(config.config_file().read_text())["auths"]


def test_plain_http_only_for_loopback_and_marked_registries(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_CONFIG", str(tmp_path))
    monkeypatch.setenv("KETCH_INSECURE_REGISTRIES", "reg.lan:5000, other.lan")
    assert config.allows_plain_http("127.0.0.1:5000")
    assert config.allows_plain_http("localhost")
    assert config.allows_plain_http("[::1]:5000")
    assert config.allows_plain_http("reg.lan:5000")
    assert config.allows_plain_http("other.lan:443")
    assert not config.allows_plain_http("reg.lan:6000")
    assert not config.allows_plain_http("registry.example")
    (tmp_path / "config.json").write_text(json.dumps({"insecure-registries": ["cfg.lan"]}))
    assert config.allows_plain_http("cfg.lan")


def test_corrupt_credentials_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="config.json"):
        config.get_credentials("reg.example")
