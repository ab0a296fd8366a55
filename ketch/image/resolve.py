"""Resolving layer entry paths inside a snapshot directory, never outside it.

Parents are opened with openat2(RESOLVE_IN_ROOT): the kernel treats the
snapshot directory as "/" for the whole walk, so `..`, absolute symlinks and
symlink chains stay inside. Where openat2 is missing, the walk goes one
component at a time with O_NOFOLLOW and refuses symlinked parents. Missing
parent directories are created, as Docker does. The last parent's fd is
cached (entries come grouped by directory); the unpacker forgets it on any
removal, so a cached fd never names a replaced directory.
"""

from __future__ import annotations

import errno
import os

from ketch._sys.openat2 import Resolve, openat2
from ketch.errors import DataError

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class Resolver:
    def __init__(self, dest: str):
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._parent: tuple[tuple[str, ...], int] | None = None
        try:
            os.close(openat2(self.root, ".", _DIR_FLAGS, 0, Resolve.IN_ROOT))
            self.have_openat2 = True
        except OSError:
            self.have_openat2 = False

    def close(self) -> None:
        self.forget()
        os.close(self.root)

    def parent_fd(self, parts: list[str], entry: str) -> int:
        """An O_PATH fd of the entry's parent directory, created if missing."""
        if self.have_openat2:
            try:
                return self._open_in_root(parts, entry)
            except FileNotFoundError:
                pass
        # Walk one component at a time, creating missing dirs (Docker does too).
        fd = os.dup(self.root)
        for i in range(len(parts)):
            try:
                nfd = self._step(fd, parts[:i + 1], entry)
            finally:
                os.close(fd)
            fd = nfd
        return fd

    def _open_in_root(self, parts: list[str], entry: str) -> int:
        try:
            return openat2(self.root, "/".join(parts) or ".", _DIR_FLAGS, 0,
                           Resolve.IN_ROOT | Resolve.NO_MAGICLINKS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise DataError(f"layer entry {entry!r}: parent {'/'.join(parts)!r}: "
                            f"{exc.strerror}") from exc

    def existing_dir(self, parts: list[str]) -> int | None:
        """Like parent_fd, but None instead of creating anything."""
        if self.have_openat2:
            try:
                return openat2(self.root, "/".join(parts) or ".", _DIR_FLAGS, 0,
                               Resolve.IN_ROOT | Resolve.NO_MAGICLINKS)
            except OSError:
                return None
        fd = os.dup(self.root)
        for comp in parts:
            try:
                nfd = os.open(comp, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                return None
            finally:
                os.close(fd)
            fd = nfd
        return fd

    def _step(self, fd: int, path: list[str], entry: str) -> int:
        """Open path[-1] under fd (the resolution of path[:-1]), making it if missing."""
        comp, shown = path[-1], "/".join(path)
        if self.have_openat2:
            try:
                return self._open_in_root(path, entry)
            except FileNotFoundError:
                pass
        try:
            return os.open(comp, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            why = "is a symlink" if exc.errno == errno.ELOOP or os.path.islink(
                f"{fd_path(fd)}/{comp}") else "is not a directory"
            raise DataError(f"layer entry {entry!r}: parent {shown!r} {why}") from exc
        try:
            os.mkdir(comp, 0o755, dir_fd=fd)
        except FileExistsError as exc:
            raise DataError(f"layer entry {entry!r}: parent {shown!r} is a symlink "
                            f"to a missing directory") from exc
        return os.open(comp, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)

    def cached(self, parent: tuple[str, ...], entry: str) -> int:
        """Entries come grouped by directory: keep the last parent's fd. Any
        removal forgets it, so a cached fd never names a replaced directory."""
        if self._parent is not None and self._parent[0] == parent:
            return self._parent[1]
        self.forget()
        fd = self.parent_fd(list(parent), entry)
        self._parent = (parent, fd)
        return fd

    def forget(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None
