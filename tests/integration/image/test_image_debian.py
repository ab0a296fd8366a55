"""`ketch bootstrap debian:bookworm` from the host's apt sources (slow: opt in with
KETCH_TEST_SLOW=1; about a minute and ~190 MB of packages)."""

from __future__ import annotations

import os

import pytest

from ketch.engine import images
from tests.conftest import need_tool
from tests.integration.image.conftest import chroot_sh, ketch, mounted

pytestmark = pytest.mark.slow


def test_bootstrap_debian_with_include(ketch_env, conn, tmp_path):
    if os.environ.get("KETCH_TEST_SLOW") != "1":
        pytest.skip("slow (mmdebstrap of bookworm): set KETCH_TEST_SLOW=1 to run")
    need_tool("mmdebstrap")
    ketch("bootstrap", "debian:bookworm", "--include", "procps", "-q")
    rec = images.resolve(conn, "debian:bookworm")
    assert rec.config["config"]["Cmd"] == ["bash"]
    assert "--include=procps" in rec.config["history"][-1]["created_by"]
    mounts = images.prepare_rootfs(conn, rec, "deb")
    with mounted(mounts, tmp_path / "m") as m:
        out = chroot_sh(m, "cat /etc/debian_version; command -v ps; dpkg -s procps | head -2")
    images.remove_rootfs(conn, "deb")
    assert out.startswith("12.") and "/usr/bin/ps" in out and "Package: procps" in out
    assert images.check(conn, verify_blobs=False) == []
