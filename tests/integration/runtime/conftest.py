"""Fixtures for ketch-runc tests: a busybox bundle built from /bin/busybox, and a runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ketch.oci.runtime_spec import default_spec
from tests.conftest import command

BUSYBOX = "/bin/busybox"


def make_rootfs(root: Path) -> Path:
    """A busybox rootfs: the static binary plus one symlink per applet (fast: no copying)."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox-static (/bin/busybox)")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in applets:
        if name != "busybox":
            os.symlink("busybox", root / "bin" / name)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        (root / d).mkdir(exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return root


class Bundle:
    def __init__(self, path: Path):
        self.path = path
        self.config = default_spec()
        self.config["process"]["terminal"] = False
        self.config["process"]["args"] = ["true"]
        self.config["root"]["readonly"] = False

    def save(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config))

    @property
    def process(self) -> dict:
        return self.config["process"]

    @property
    def linux(self) -> dict:
        return self.config["linux"]


@pytest.fixture(scope="session")
def _rootfs_template(tmp_path_factory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("bbtemplate") / "rootfs")


@pytest.fixture
def bundle(tmp_path: Path, _rootfs_template: Path) -> Bundle:
    path = tmp_path / "bundle"
    path.mkdir()
    # Hard links: each test gets its own tree in milliseconds; the binary is shared.
    shutil.copytree(_rootfs_template, path / "rootfs", symlinks=True, copy_function=os.link)
    return Bundle(path)


class Runc:
    """Runs `ketch-runc` with the test's --root; returns CompletedProcess."""

    def __init__(self, root: str):
        self.exe = command("ketch-runc")
        self.root = root

    def __call__(self, *args: str, check: bool = False, input: str | None = None,
                 timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        # Files, not pipes: a detached container inherits create's stdio and would
        # hold a pipe open forever (as with runc).
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run([self.exe, "--root", self.root, *args], stdout=out,
                                  stderr=err, input=input, text=True, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            proc.stdout = out.read().decode(errors="replace")
            proc.stderr = err.read().decode(errors="replace")
        if check and proc.returncode != 0:
            raise AssertionError(f"ketch-runc {' '.join(args)} -> {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    def run(self, bundle: Bundle, cid: str = "c1", **kw) -> subprocess.CompletedProcess:
        bundle.save()
        return self("run", "--bundle", str(bundle.path), cid, **kw)

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)


@pytest.fixture
def runc(ketch_env) -> Runc:
    return Runc(ketch_env["KETCH_RUNC_ROOT"])
