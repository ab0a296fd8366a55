"""The copy snapshotter, for where overlayfs cannot be used: every snapshot is a
full tree (a layer chain = its parent's tree copied, then the layer applied),
and a container gets its own copy, bind-mounted. Costly in space; always works.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ketch.errors import DataError, NotFound
from ketch.snapshot.base import Snapshotter, disk_usage, remove_tree


def copy_tree(src: Path, dst: Path) -> None:
    """cp -a keeps owners, modes, xattrs, hardlinks and devices; reflinks where it can."""
    dst.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", f"{src}/.", str(dst)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        remove_tree(dst)
        raise DataError(f"copy snapshot {src} -> {dst}: {proc.stderr.strip()}")


class CopySnapshotter(Snapshotter):
    name = "copy"
    whiteouts = "delete"

    def _seed_layer(self, fs: Path, parents: list[str]) -> None:
        if parents:
            copy_tree(self.fs(parents[0]), fs)

    def layer_size(self, fs: Path, parents: list[str]) -> int:
        # A copy holds the parent too: count only what this layer adds.
        base = disk_usage(self.fs(parents[0])) if parents else 0
        return max(0, disk_usage(fs) - base)

    def prepare(self, key: str, parents: list[str]) -> list[dict]:
        d = self.dir(key)
        d.mkdir(parents=True, exist_ok=False)
        (d / "partial").touch()
        if parents:
            copy_tree(self.fs(parents[0]), d / "fs")
        else:
            (d / "fs").mkdir()
        (d / "partial").unlink()
        return self.mounts(key, parents)

    def mounts(self, key: str, parents: list[str]) -> list[dict]:
        fs = self.fs(key)
        if not fs.is_dir():
            raise NotFound(f"snapshot {key!r} not found")
        return [{"type": "bind", "source": str(fs), "options": ["rbind", "rw"]}]
