"""Registry fixtures: real docker-registry processes (open, htpasswd, token) per module,
a busybox test image put into them with skopeo, and a ketch CLI runner.

Registries are shared by the tests of a module (starting one costs ~0.2 s);
each is stopped by its PID at module end. Every test gets its own ketch
config dir (credentials) through KETCH_CONFIG.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import command, need_tool
from tests.integration.registry.registry_images import build_layout, busybox_files, skopeo_push
from tests.integration.registry.registry_servers import PASSWORD, USER, start_registry

CREDS = (USER, PASSWORD)


def _start(tmp_path_factory, auth: str):
    need_tool("docker-registry")
    if auth == "basic":
        need_tool("htpasswd")
    if auth == "token":
        need_tool("openssl")
    reg = start_registry(tmp_path_factory.mktemp(f"registry-{auth}"), auth)
    return reg


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, dict]:
    """An OCI layout with a two-layer busybox image tagged 'latest'."""
    need_tool("skopeo")
    root = tmp_path_factory.mktemp("layout")
    manifest = build_layout(root, [busybox_files(), {"etc/motd": b"pulled by ketch\n"}])
    return root, manifest


@pytest.fixture(scope="module")
def registry(tmp_path_factory, layout):
    reg = _start(tmp_path_factory, "none")
    try:
        skopeo_push(layout[0], "latest", f"{reg.host}/lib/bb:1")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory, layout):
    reg = _start(tmp_path_factory, "basic")
    try:
        skopeo_push(layout[0], "latest", f"{reg.host}/lib/bb:1", creds=CREDS)
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, layout):
    reg = _start(tmp_path_factory, "token")
    try:
        skopeo_push(layout[0], "latest", f"{reg.host}/public/bb:1", creds=CREDS)
        reg.token_server.requests.clear()
        yield reg
    finally:
        reg.stop()


@pytest.fixture(autouse=True)
def own_config(tmp_path, monkeypatch):
    """Credentials and insecure-registry settings of this test only."""
    monkeypatch.setenv("KETCH_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


@pytest.fixture
def ketch():
    """Run the ketch CLI; returns CompletedProcess (text)."""
    exe = command("ketch")

    def run(*args: str, input: str | None = None, timeout: float = 60):
        return subprocess.run([exe, *args], capture_output=True, text=True, input=input,
                              timeout=timeout, env=dict(os.environ))
    return run
