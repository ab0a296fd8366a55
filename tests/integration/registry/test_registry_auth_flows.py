"""login/logout and pulls/pushes against an htpasswd (Basic) registry and a registry
behind a real token server (Bearer JWTs checked by docker-registry)."""

from __future__ import annotations

import json

from ketch.engine import distribution
from ketch.registry import config
from tests.integration.registry.registry_servers import PASSWORD, USER


def test_basic_auth_login_pull_logout(basic_registry, ketch):
    host = basic_registry.host
    ref = f"{host}/lib/bb:1"
    anon = ketch("pull", ref)
    assert anon.returncode == 125
    assert anon.stderr.strip() == (f"ketch: {host}: authentication required "
                                   f"(run `ketch login {host}`)")
    bad = ketch("login", "-u", USER, "--password-stdin", host, input="wrong\n")
    assert bad.returncode == 125
    assert bad.stderr.strip() == (f"ketch: login to {host}: unauthorized: "
                                  "incorrect username or password")
    assert not config.config_file().exists()
    ok = ketch("login", "-u", USER, "--password-stdin", host, input=PASSWORD + "\n")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "Login Succeeded"
    auths = json.loads(config.config_file().read_text())["auths"]
    assert list(auths) == [host]
    pulled = ketch("pull", "-q", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert ketch("logout", host).stdout.strip() == f"Removing login credentials for {host}"
    assert distribution.logout(host) == f"Not logged in to {host}"
    assert ketch("pull", ref).returncode == 125


def test_token_auth_anonymous_pull_authenticated_push(token_registry, ketch):
    host = token_registry.host
    ts = token_registry.token_server
    ts.requests.clear()
    ref = f"{host}/public/bb:1"
    out = ketch("pull", "-q", ref)
    assert out.returncode == 0, out.stderr
    # One token for the whole pull (manifest, config, two layers): the cache works.
    assert [(r["scopes"], r["user"]) for r in ts.requests] == [
        (["repository:public/bb:pull"], None)]

    # Anonymous push is refused by the registry (the token lacks `push`).
    from ketch.engine import db
    from ketch.engine import images as _images
    store = _images.store(db.connect())
    store.tag(store.resolve(ref).id, f"{host}/team/bb:1")
    refused = ketch("push", f"{host}/team/bb:1")
    assert refused.returncode == 125
    assert refused.stderr.startswith("ketch: ") and "unauthorized" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    bad = ketch("login", "-u", USER, "-p", "nope", host)
    assert bad.returncode == 125
    assert bad.stderr.splitlines()[-1] == (f"ketch: {host}: authentication failed: "
                                           "incorrect username or password")
    login = ketch("login", "-u", USER, "--password-stdin", host, input=PASSWORD)
    assert login.returncode == 0, login.stderr
    ts.requests.clear()
    rep = distribution.push(f"{host}/team/bb:1")
    assert rep.tag == "1"
    # The push token covered team/bb push and public/bb pull (for the mount).
    asked = [s for r in ts.requests for s in r["scopes"]]
    assert "repository:team/bb:pull,push" in asked
    assert all(r["user"] == USER for r in ts.requests)


def test_https_registry_trusted_through_certs_d(tmp_path_factory, layout, ketch):
    """TLS for real: refused without the CA (the https error is reported, not the
    plain-http fallback's), pulled once certs.d/<host>/ca.crt holds it."""
    import shutil
    import subprocess

    from tests.conftest import need_tool
    from tests.integration.registry.registry_servers import start_registry
    need_tool("docker-registry")
    need_tool("openssl")
    work = tmp_path_factory.mktemp("registry-tls")
    reg = start_registry(work, tls=True)
    try:
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        f"oci:{layout[0]}:latest", f"docker://{reg.host}/lib/bb:1"],
                       check=True, capture_output=True)
        ref = f"{reg.host}/lib/bb:1"
        refused = ketch("pull", "-q", ref)
        assert refused.returncode == 125
        assert "certificate verify failed" in refused.stderr, refused.stderr
        certs = config.config_dir() / "certs.d" / reg.host
        certs.mkdir(parents=True)
        shutil.copy(work / "tls.crt", certs / "ca.crt")
        ok = ketch("pull", "-q", ref)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == ref
    finally:
        reg.stop()


def test_credentials_from_docker_config_are_used(basic_registry, monkeypatch, tmp_path):
    """A machine logged in with `docker login` (DOCKER_CONFIG) pulls without ketch login."""
    import base64

    docker_dir = tmp_path / "docker-config"
    docker_dir.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_dir / "config.json").write_text(
        json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    [rep] = distribution.pull(f"{basic_registry.host}/lib/bb:1")
    assert rep.downloaded
    assert not config.config_file().exists()  # nothing written to ketch's own file

