"""The container's root filesystem as a read-only erofs image, built once and cached.

erofs on virtio-blk gave the fastest reads of the options measured (9p and
virtiofs for the root were slower), and one image serves every micro-VM of
that rootfs; each guest makes it writable with an overlay on tmpfs.

Cache key: the bundle annotation `ketch.vm.image-id` when the engine sets it
(it promises the rootfs is that image, unchanged), else a hash of the rootfs
tree's metadata (names, modes, owners, sizes, mtimes, link targets), which
changes whenever a file does without reading every byte.

Every image is padded, sparse, to DISK_BYTES: one disk capacity for all
images, so a guest restored from a snapshot (snapshot.py) that probed the disk
as another image still sees the right size. The padding costs no blocks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.vm.kernel import cache_dir

IMAGE_ID_ANNOTATION = "ketch.vm.image-id"
#: Cached images kept, least recently used removed first (a running VM keeps
#: its open image even if the file is removed).
CACHE_ENTRIES = 32
#: The disk size every image is padded to; a larger image keeps its own size
#: (and boots cold, without a snapshot).
DISK_BYTES = 16 << 30


def tree_key(root: Path) -> str:
    """A digest of the tree's metadata, walked in a stable order."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            h.update(f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0"
                     f"{st.st_mtime_ns}\0{st.st_rdev}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
    return h.hexdigest()[:32]


def image_for(rootfs: Path, annotations: dict[str, str] | None = None) -> Path:
    """The cached erofs image of `rootfs`, building it if missing."""
    if not rootfs.is_dir():
        raise InvalidArgument(f"rootfs {str(rootfs)!r}: not a directory")
    image_id = (annotations or {}).get(IMAGE_ID_ANNOTATION, "")
    if image_id:
        key = "img-" + hashlib.sha256(image_id.encode()).hexdigest()[:32]
    else:
        key = "tree-" + tree_key(rootfs)
    out = cache_dir() / "rootfs" / f"{key}.erofs"
    if out.exists():
        os.utime(out)   # recently used
        _pad(out)       # images cached before the padding existed
        return out
    mkfs = shutil.which("mkfs.erofs")
    if mkfs is None:
        raise FailedPrecondition("mkfs.erofs not found: install erofs-utils")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    proc = subprocess.run([mkfs, "--quiet", str(tmp), str(rootfs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise FailedPrecondition(f"mkfs.erofs {rootfs}: {last}")
    _pad(tmp)
    os.replace(tmp, out)
    _prune(out.parent, keep=out)
    return out


def _pad(image: Path) -> None:
    """Extend to DISK_BYTES with a hole: erofs ignores what follows its blocks.
    Idempotent, and harmless to a VM that has the image open."""
    if image.stat().st_size < DISK_BYTES:
        os.truncate(image, DISK_BYTES)


def _prune(directory: Path, keep: Path) -> None:
    images = sorted(directory.glob("*.erofs"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[CACHE_ENTRIES:]:
        if old != keep:
            old.unlink(missing_ok=True)
