"""Fixtures: one private Docker daemon, then one private Podman, driving ketch-runc.

`engine` is module-scoped and parametrized: pytest runs every test with the
Docker engine, stops dockerd, then runs them with Podman, so only one engine
is up at a time and none outlives this module. An engine whose tools are not
installed skips its tests with the reason. At the engine's teardown this
conftest verifies that it left nothing behind (processes, mounts, container
cgroups, ketch-runc state) and fails if it did, after cleaning up.

The engines' files live in their own temp dir, not in a test's tmp_path (the
shared `no_leaks` fixture judges each test's tmp_path on its own); their
cgroups live below `ketch/interop-<id>`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import command, need_root
from tests.integration.interop import engines

TOOLS = {
    "docker": ("dockerd", "docker", "containerd", "containerd-shim-runc-v2"),
    "podman": ("podman", "conmon"),
}
PACKAGES = {"docker": "Debian's docker.io", "podman": "Debian's podman"}
CLASSES = {"docker": engines.PrivateDocker, "podman": engines.PrivatePodman}


@pytest.fixture(scope="module")
def interop_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ketch's busybox image as a `docker load` / `podman load` tar."""
    need_root()
    return engines.busybox_tar(command("ketch"), tmp_path_factory.mktemp("interop-image"))


@pytest.fixture(scope="module", params=["docker", "podman"])
def engine(request: pytest.FixtureRequest, interop_image: Path):
    name = request.param
    need_root()
    missing = engines.missing_tools(*TOOLS[name])
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed ({PACKAGES[name]})")
    eng = CLASSES[name](command("ketch-runc"), f"ketch/interop-{uuid.uuid4().hex[:8]}")
    try:
        eng.start()
        eng.load(interop_image)
    except (engines.EngineError, AssertionError) as exc:
        eng.stop()
        eng.purge()
        pytest.fail(f"{name}: {exc}", pytrace=False)
    yield eng
    eng.stop()
    left = eng.leftovers()
    eng.purge()
    if left:
        pytest.fail(f"{name} left behind: {'; '.join(left)}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_containers_left(request: pytest.FixtureRequest):
    """Each test removes its containers (and so their cgroups) itself."""
    yield
    if "engine" not in request.fixturenames:
        return
    eng = request.getfixturevalue("engine")
    ids = eng.containers()
    if ids:
        eng("rm", "--force", *ids)
    cgroups = eng.container_cgroups()
    if ids or cgroups:
        pytest.fail(f"{eng.name}: test left containers {ids}, cgroups {cgroups}", pytrace=False)
