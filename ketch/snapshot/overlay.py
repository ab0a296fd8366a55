"""The overlay snapshotter: each layer chain is one directory holding only that
layer's changes (overlay whiteouts: 0/0 char devices and the opaque xattr);
a container is an upper+work pair over its chain's directories as lowers.
"""

from __future__ import annotations

from ketch.errors import NotFound
from ketch.snapshot.base import Snapshotter


class OverlaySnapshotter(Snapshotter):
    name = "overlay"
    whiteouts = "overlay"

    def prepare(self, key: str, parents: list[str]) -> list[dict]:
        d = self.dir(key)
        (d / "fs").mkdir(parents=True, exist_ok=False)
        (d / "work").mkdir()
        return self.mounts(key, parents)

    def mounts(self, key: str, parents: list[str]) -> list[dict]:
        d = self.dir(key)
        if not (d / "fs").is_dir():
            raise NotFound(f"snapshot {key!r} not found")
        if not parents:
            return [{"type": "bind", "source": str(d / "fs"), "options": ["rbind", "rw"]}]
        lowers = ":".join(str(self.fs(p)) for p in parents)
        return [{"type": "overlay", "source": "overlay",
                 "options": [f"lowerdir={lowers}", f"upperdir={d / 'fs'}",
                             f"workdir={d / 'work'}"]}]

    def view_mounts(self, parents: list[str]) -> list[dict]:
        """Read-only mounts of a chain (no upper), for export and diff."""
        if len(parents) == 1:
            return [{"type": "bind", "source": str(self.fs(parents[0])),
                     "options": ["rbind", "ro"]}]
        lowers = ":".join(str(self.fs(p)) for p in parents)
        return [{"type": "overlay", "source": "overlay", "options": [f"lowerdir={lowers}"]}]
