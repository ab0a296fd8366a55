"""Interop with the real Docker: what ketch saves `docker load` reads, and what
`docker save` writes ketch loads. A private dockerd (own data root, socket and
exec root; no bridge, no iptables) is started for the test and stopped after."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from ketch.engine import images
from tests.integration.image.conftest import ketch


@pytest.fixture
def docker(ketch_env, tmp_path):
    if not (shutil.which("dockerd") and shutil.which("docker")):
        pytest.skip("needs dockerd and docker, which are not installed")
    run = tempfile.mkdtemp(prefix="kd")    # short: containerd's socket path must fit
    sock = f"{run}/docker.sock"
    log = open(tmp_path / "dockerd.log", "wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(tmp_path / "docker"), "--exec-root", f"{run}/exec",
         "--pidfile", f"{run}/docker.pid", "-H", f"unix://{sock}", "--bridge", "none",
         "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
         "--storage-driver", "vfs"], stdout=log, stderr=log, start_new_session=True)

    def d(*args: str) -> str:
        r = subprocess.run(["docker", "-H", f"unix://{sock}", *args], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, f"docker {args}: {r.stderr}"
        return r.stdout

    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.skip("dockerd would not start here: "
                            + (tmp_path / "dockerd.log").read_text()[-300:])
            if os.path.exists(sock) and subprocess.run(
                    ["docker", "-H", f"unix://{sock}", "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.skip("dockerd did not answer within 60 s")
        yield d
    finally:
        # Stop dockerd and the containerd it started (their command lines name our dirs).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        subprocess.run(["umount", "-R", "-l", str(tmp_path / "docker")], capture_output=True)
        shutil.rmtree(run, ignore_errors=True)


def test_docker_loads_what_ketch_saves_and_back(busybox, conn, docker, tmp_path):
    rec = images.resolve(conn, "busybox")
    ketch("save", "-o", str(tmp_path / "k.tar"), "busybox")
    assert "Loaded image: busybox:latest" in docker("load", "-i", str(tmp_path / "k.tar"))
    seen = json.loads(docker("image", "inspect", "busybox:latest"))[0]
    assert seen["Id"] == rec.id                                  # same config, same image
    assert seen["RootFS"]["Layers"] == rec.config["rootfs"]["diff_ids"]
    assert seen["Config"]["Cmd"] == ["sh"]
    docker("tag", "busybox:latest", "fromdocker:1")
    docker("save", "-o", str(tmp_path / "d.tar"), "fromdocker:1")
    out = ketch("load", "-q", "-i", str(tmp_path / "d.tar")).stdout.decode()
    assert out == "Loaded image: fromdocker:1\n"
    back = images.resolve(conn, "fromdocker:1")
    assert back.id == rec.id and back.chain == rec.chain         # the layer is shared
    assert images.check(conn) == []
