"""The busybox root filesystem given to runtimes that do not use ketch's images.

runc gets it as an OCI bundle's rootfs, podman and docker import it as a tar.
It holds the host's own busybox-static binary (the file `ketch bootstrap
busybox` copies too), so every runtime executes the very same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from ketch.bench.runtimes import NotAvailable, Workspace

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def host_busybox() -> Path:
    """The host's static busybox; NotAvailable when there is none."""
    for cand in BUSYBOX_CANDIDATES:
        p = Path(cand)
        if p.is_file() and os.access(p, os.X_OK):
            return p.resolve()
    raise NotAvailable("busybox-static is not installed on the host")


def busybox_sha256() -> str:
    h = hashlib.sha256()
    with open(host_busybox(), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rootfs_dir(ws: Workspace) -> Path:
    """<ws>/rootfs: busybox, one symlink per applet, the usual empty mount points."""
    root = ws.dir / "rootfs"
    if (root / "bin" / "busybox").exists():
        return root
    busybox = host_busybox()
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "vol"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for name in applets:
        # `busybox --list` names busybox itself; a self-link would replace the binary.
        if name != "busybox" and "/" not in name:
            link = root / "bin" / name
            if not link.exists():
                link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def rootfs_tar(ws: Workspace) -> Path:
    """The same tree as a tar (for `podman import` / `docker import`)."""
    tar = ws.dir / "rootfs.tar"
    if not tar.exists():
        root = rootfs_dir(ws)
        with tarfile.open(tar, "w") as t:
            for entry in sorted(root.iterdir()):
                t.add(entry, arcname=entry.name)
    return tar
