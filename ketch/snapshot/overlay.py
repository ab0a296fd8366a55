"""The overlay snapshotter: each layer chain is one directory holding only that
layer's changes (overlay whiteouts: 0/0 char devices and the opaque xattr);
a container is an upper+work pair over its chain's directories as lowers.

Lower directories are named through short links (``l/<12 hex>`` ->
``../<key>/fs``), as Docker's overlay2 does: mount options must fit in one
page, and full paths would cap an image at a few dozen layers.
"""

from __future__ import annotations

import os

from ketch.errors import FailedPrecondition, NotFound
from ketch.snapshot.base import Snapshotter

_PAGE = 4096


class OverlaySnapshotter(Snapshotter):
    name = "overlay"
    whiteouts = "overlay"

    def keys(self) -> list[str]:
        return [k for k in super().keys() if k != "l"]

    def _lower(self, key: str) -> str:
        target = f"../{key}/fs"
        (self.root / "l").mkdir(exist_ok=True)
        for n in (12, 20, 32, len(key)):   # longer only if a prefix is taken
            link = self.root / "l" / key[:n]
            try:
                os.symlink(target, link)
            except FileExistsError:
                pass
            if os.readlink(link) == target:
                return str(link)
        raise FailedPrecondition(f"overlay: cannot name lower layer {key[:12]}")

    def _lowers(self, parents: list[str]) -> str:
        lowers = ":".join(self._lower(p) for p in parents)
        if len(lowers) > _PAGE - 512:
            raise FailedPrecondition(f"overlay: {len(parents)} layers do not fit in one "
                                     f"mount (lowerdir is {len(lowers)} bytes)")
        return lowers

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
        return [{"type": "overlay", "source": "overlay",
                 "options": [f"lowerdir={self._lowers(parents)}", f"upperdir={d / 'fs'}",
                             f"workdir={d / 'work'}"]}]

    def remove(self, key: str) -> None:
        super().remove(key)
        for n in (12, 20, 32, len(key)):
            link = self.root / "l" / key[:n]
            if link.is_symlink() and os.readlink(link) == f"../{key}/fs":
                link.unlink()
