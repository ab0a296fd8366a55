"""Snapshotters: directories for layer chains and containers, described as mounts.

A snapshotter owns one directory tree, ``<root>/snapshots/<name>/<key>/``, and
knows nothing of images or the database: callers (image/) pass each
snapshot's parent chain explicitly, top first. Two kinds of snapshot exist:

- committed: one per layer chain (key = the chain ID's hex); read-only once
  committed, shared by every image and container on that chain;
- active: one per container (key = container id), writable, on top of a chain.

Snapshotters never mount: `prepare()` returns runtime-spec style mounts that
runtime/ performs. `pick()` chooses overlay where the kernel and the backing
filesystem allow it, else the copy fallback (KETCH_SNAPSHOTTER forces one).
"""

from __future__ import annotations

import os
from pathlib import Path

from ketch.errors import FailedPrecondition, NotFound

# statfs f_type of filesystems overlayfs cannot use as an upper layer.
_NO_UPPER = {0x794C7630: "overlayfs", 0x6969: "nfs", 0x61756673: "aufs", 0x65735546: "fuse"}


class Snapshotter:
    name = "base"
    #: how unpack must treat whiteouts: "overlay" (write overlay whiteouts into an
    #: empty layer dir) or "delete" (apply them to a full copy of the parent)
    whiteouts = "delete"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def dir(self, key: str) -> Path:
        if not key or "/" in key or key in (".", ".."):
            raise NotFound(f"snapshot {key!r} not found")
        return self.root / key

    def fs(self, key: str) -> Path:
        return self.dir(key) / "fs"

    def exists(self, key: str) -> bool:
        return (self.dir(key) / "fs").is_dir() and not (self.dir(key) / "partial").exists()

    def keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if not p.name.startswith(".") and not (p / "partial").exists())

    # -- committed snapshots (layers) ----------------------------------------
    def begin_layer(self, key: str, parents: list[str]) -> Path:
        """A fresh directory to unpack one layer into; commit_layer() publishes it."""
        tmp = self.root / f".new-{key}-{os.getpid()}"
        remove_tree(tmp)
        self.sweep_unpacks(key)
        (tmp / "fs").mkdir(parents=True)
        self._seed_layer(tmp / "fs", parents)
        return tmp / "fs"

    def sweep_unpacks(self, key: str = "*") -> None:
        """Remove unpack directories (.new-<key>-<pid>) whose process is gone (killed)."""
        for old in self.root.glob(f".new-{key}-*"):
            pid = old.name.rsplit("-", 1)[-1]
            if not (pid.isdigit() and os.path.exists(f"/proc/{pid}")):
                remove_tree(old)

    def _seed_layer(self, fs: Path, parents: list[str]) -> None:
        """Copy fallback fills the new layer with its parent; overlay leaves it empty."""

    def commit_layer(self, key: str, fs: Path) -> None:
        tmp = fs.parent
        try:
            os.rename(tmp, self.dir(key))
        except OSError:
            # Someone else committed the same chain meanwhile: theirs is as good.
            if not self.exists(key):
                raise
            remove_tree(tmp)

    def abort_layer(self, fs: Path) -> None:
        remove_tree(fs.parent)

    # -- active snapshots (containers) ---------------------------------------
    def prepare(self, key: str, parents: list[str]) -> list[dict]:
        raise NotImplementedError

    def mounts(self, key: str, parents: list[str]) -> list[dict]:
        raise NotImplementedError

    def remove(self, key: str) -> None:
        remove_tree(self.dir(key))

    def layer_size(self, fs: Path, parents: list[str]) -> int:
        """Bytes one layer adds (overlay: its own dir; copy overrides)."""
        return disk_usage(fs)

    def usage(self, key: str) -> int:
        """Bytes used by this snapshot's own directory (st_blocks, hardlinks once)."""
        return disk_usage(self.fs(key))


def remove_tree(path: Path) -> None:
    """rm -rf that also copes with read-only directories a layer may have made."""
    if not path.exists() and not path.is_symlink():
        return

    def fix(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except FileNotFoundError:
            pass

    import shutil  # here: inspect and rmi load this module, few remove a tree (~3 ms)

    shutil.rmtree(path, onerror=fix)


def disk_usage(path: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def overlay_usable(root: Path) -> str | None:
    """None if overlayfs can work under `root`, else why not."""
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return "the kernel has no overlay filesystem"
    except OSError:
        return "cannot read /proc/filesystems"
    probe = root
    while not probe.exists():
        probe = probe.parent
    # Through the syscall layer's ffi, not ctypes: every `ketch run` picks a
    # snapshotter, and importing ctypes costs it ~3 ms.
    from ketch._sys import ffi, libc

    class _Statfs(ffi.Structure):   # struct statfs: f_type first, 120 bytes in all
        _fields_ = [("f_type", ffi.c_long), ("rest", ffi.c_long * 15)]

    buf = _Statfs()
    if libc().statfs(str(probe).encode(), ffi.byref(buf)) == 0:
        kind = _NO_UPPER.get(buf.f_type & 0xFFFFFFFF)
        if kind:
            return f"{probe} is on {kind}, which overlayfs cannot use as an upper layer"
    return None


def pick(root: Path) -> Snapshotter:
    """The snapshotter for `root` (= <ketch root>/snapshots): overlay if usable, else copy."""
    want = os.environ.get("KETCH_SNAPSHOTTER", "")
    why = "KETCH_SNAPSHOTTER=copy" if want == "copy" else overlay_usable(root)
    if want == "overlay" and why:
        raise FailedPrecondition(f"snapshotter overlay: {why}")
    if why is None:
        from ketch.snapshot.overlay import OverlaySnapshotter

        return OverlaySnapshotter(root / "overlay")
    from ketch.snapshot.copy import CopySnapshotter

    return CopySnapshotter(root / "copy")
