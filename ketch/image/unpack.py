"""Safe layer unpacking: a layer tar is hostile input.

Every entry is applied relative to an fd of the snapshot directory. Parents
are resolved with openat2(RESOLVE_IN_ROOT), so `..`, absolute symlinks and
symlink chains all stay inside the snapshot; the entry's own last component
is never followed (O_NOFOLLOW, *at calls without AT_SYMLINK_FOLLOW), so a
symlink planted by an earlier entry is replaced, not written through.
Names with `..` components are refused (the error names the entry); leading
`/` is stripped, as Docker does. Hardlink targets resolve inside the
snapshot the same way. Nothing outside the snapshot directory is created,
changed or deleted.

Whiteouts: in "overlay" mode (unpacking one layer into its own empty
directory) `.wh.x` becomes a 0/0 character device and `.wh..wh..opq` the
trusted.overlay.opaque xattr; in "delete" mode (a full copy of the parent)
they delete what they name.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import stat
import tarfile
from typing import BinaryIO

from ketch.errors import DataError
from ketch.image.resolve import Resolver, fd_path

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20
_XATTR_OK = ("user.", "security.capability", "trusted.")


def _umask() -> int:
    """The process umask, read without setting it (other threads may create files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777   # unknown: always fchmod


class _Inflater:
    """The layer's uncompressed bytes, read by a helper thread and hashed there (the
    diff ID): zlib, zstd and sha256 release the GIL, so decompressing overlaps the
    Python that parses and writes entries. Seeks go forward only (skipped bytes
    are consumed and hashed), which is all tarfile's random-access mode needs,
    and spares its stream mode's extra buffering layer."""

    def __init__(self, raw: BinaryIO, chunk: int = _CHUNK):
        import queue
        import threading

        self.h, self.n, self.pos = hashlib.sha256(), 0, 0
        self.buf, self.off = b"", 0
        self._q: queue.Queue = queue.Queue(maxsize=8)
        self._closed = threading.Event()
        self._t = threading.Thread(target=self._produce, args=(raw, chunk),
                                   name="ketch-inflate", daemon=True)
        self._t.start()

    def _produce(self, raw: BinaryIO, chunk: int) -> None:
        import queue

        try:
            while data := raw.read(chunk):
                self.h.update(data)
                self.n += len(data)
                item: object = data
                while True:
                    try:
                        self._q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        if self._closed.is_set():
                            return
            item = b""
        except BaseException as exc:  # noqa: BLE001 - raised again by the reader
            item = exc
        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _fill(self) -> bool:
        if self.buf is None:
            return False
        item = self._q.get()
        if isinstance(item, BaseException):
            self.buf = None
            raise item
        self.buf, self.off = (item or None), 0
        return item != b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        parts = []
        while n > 0:
            if self.buf is None or self.off >= len(self.buf):
                if not self._fill():
                    break
            take = self.buf[self.off:self.off + n]
            self.off += len(take)
            n -= len(take)
            parts.append(take)
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos += len(out)
        return out

    def seek(self, pos: int, whence: int = 0) -> int:
        skip = (pos if whence == 0 else self.pos + pos) - self.pos
        if skip < 0 or whence not in (0, 1):
            raise OSError(errno.ESPIPE, "layer stream: backward seek")
        while skip > 0:
            if self.buf is None or self.off >= len(self.buf):
                if not self._fill():
                    break
            take = min(skip, len(self.buf) - self.off)
            self.off += take
            self.pos += take
            skip -= take
        return self.pos

    def tell(self) -> int:
        return self.pos

    def drain(self) -> None:
        while self.buf is not None:
            self.off = len(self.buf or b"")
            self._fill()

    def close(self) -> None:
        self._closed.set()
        self._t.join()


class _CountingReader:
    """Reports bytes read from the (compressed) blob: progress for the caller."""

    def __init__(self, raw: BinaryIO, on_read):
        self.raw, self.on_read, self.n = raw, on_read, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.n += len(data)
        self.on_read(self.n)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.raw.seek(pos, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readable(self) -> bool:
        return True


def decompressed(f: BinaryIO) -> BinaryIO:
    """gzip, zstd or plain tar, told apart by magic bytes as Docker does."""
    head = f.read(4)
    f.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    return f


def clean_name(name: str, what: str) -> list[str]:
    """Path components of a tar name; DataError if it climbs with `..`."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"layer entry {what!r}: path escapes the root with '..'")
    return parts


class Unpacker:
    def __init__(self, dest: str, whiteouts: str = "overlay"):
        self.dest = dest
        self.mode = whiteouts
        self.res = Resolver(dest)
        self.is_root = os.geteuid() == 0
        self.umask = _umask()
        self.created: set[tuple[str, ...]] = set()
        self.dirs: list[tuple[tuple[str, ...], tarfile.TarInfo]] = []
        self._stale = False

    def close(self) -> None:
        self.res.close()

    # -- application ---------------------------------------------------------
    def apply(self, tf: tarfile.TarFile) -> None:
        for m in tf:
            self.entry(tf, m)
        self.finish_dirs()

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = clean_name(m.name, m.name)
        if not parts:
            return  # the root itself
        *parent, leaf = parts
        pfd = self.res.cached(tuple(parent), m.name)
        try:
            if leaf == WH_OPAQUE:
                self._stale = True
                self.opaque(pfd, tuple(parent), m.name)
            elif leaf.startswith(WH_PREFIX):
                self._stale = True
                self.whiteout(pfd, leaf[len(WH_PREFIX):], m.name)
            else:
                self.create(tf, m, pfd, leaf, tuple(parts))
        except (OSError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise DataError(f"layer entry {m.name!r}: {why}") from exc
        finally:
            if self._stale:
                self.res.forget()   # pfd itself was the cached fd
                self._stale = False

    def whiteout(self, pfd: int, name: str, entry: str) -> None:
        if not name or name in (".", ".."):
            raise DataError(f"layer entry {entry!r}: bad whiteout")
        remove_at(pfd, name)
        if self.mode == "overlay":
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)

    def opaque(self, pfd: int, parent: tuple[str, ...], entry: str) -> None:
        if self.mode == "overlay":
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=pfd)
            try:
                os.setxattr(fd, "trusted.overlay.opaque", b"y")
            finally:
                os.close(fd)
            return
        # Delete mode: drop what lower layers put here, keep this layer's entries.
        for name in os.listdir(fd_path(pfd)):
            if parent + (name,) not in self.created:
                remove_at(pfd, name)

    def create(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, leaf: str,
               key: tuple[str, ...]) -> None:
        self.created.add(key)
        try:
            self.make(tf, m, pfd, leaf, key)
            return
        except FileExistsError:
            pass
        # Something is there already (an earlier entry or a lower layer): a
        # directory stays for a directory; anything else is removed, never
        # followed, and the entry made again.
        st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        if m.isdir() and stat.S_ISDIR(st.st_mode):
            self.dirs.append((key, m))
            return
        self._stale = True
        remove_at(pfd, leaf)
        self.make(tf, m, pfd, leaf, key)

    def make(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, leaf: str,
             key: tuple[str, ...]) -> None:
        """Create the entry's node; FileExistsError (before reading any data) if taken."""
        if m.isdir():
            os.mkdir(leaf, 0o700, dir_fd=pfd)
            self.dirs.append((key, m))
            return
        if m.isreg():
            self.regular(tf, m, pfd, leaf)
            return
        if m.issym():
            os.symlink(m.linkname, leaf, dir_fd=pfd)
        elif m.islnk():
            self.hardlink(m, pfd, leaf)
            return  # a hardlink shares the target's inode: leave its metadata alone
        elif m.ischr() or m.isblk():
            if not self.is_root:
                return  # as Docker: device nodes only when root
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(leaf, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        elif m.isfifo():
            os.mknod(leaf, stat.S_IFIFO | 0o600, dir_fd=pfd)
        else:
            raise DataError(f"layer entry {m.name!r}: unsupported type {m.type!r}")
        self.metadata_at(pfd, leaf, m)

    def regular(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, leaf: str) -> None:
        # Create with the final mode when the umask keeps it whole and there are
        # no setuid/setgid/sticky bits (those must follow chown): saves a fchmod.
        mode = m.mode & 0o7777
        direct = mode & 0o7000 == 0 and mode & self.umask == 0
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode if direct else 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(m)
            written = 0
            while src is not None and (chunk := src.read(_CHUNK)):
                # Whole blocks of zeros become holes: sparse files stay sparse.
                if len(chunk) >= 4096 and chunk.count(0) == len(chunk):
                    os.lseek(fd, len(chunk), os.SEEK_CUR)
                else:
                    os.write(fd, chunk)
                    written += len(chunk)
            if written != m.size:
                os.ftruncate(fd, m.size)   # a trailing hole, or a short member
            self.metadata_fd(fd, m, mode_set=direct)
        finally:
            os.close(fd)

    def hardlink(self, m: tarfile.TarInfo, pfd: int, leaf: str) -> None:
        parts = clean_name(m.linkname, m.name)
        if not parts:
            raise DataError(f"layer entry {m.name!r}: hardlink to the root")
        *parent, target = parts
        sfd = self.res.parent_fd(parent, m.name)
        try:
            os.link(target, leaf, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise DataError(f"layer entry {m.name!r}: hardlink target {m.linkname!r} "
                            f"not in this layer") from exc
        finally:
            os.close(sfd)

    # -- metadata ------------------------------------------------------------
    def metadata_fd(self, fd: int, m: tarfile.TarInfo, mode_set: bool = False) -> None:
        if self.is_root:
            os.fchown(fd, m.uid, m.gid)
        if not mode_set:
            os.fchmod(fd, m.mode & 0o7777)
        self.xattrs(fd, m)
        os.utime(fd, ns=(int(m.mtime * 1e9),) * 2)

    def metadata_at(self, pfd: int, leaf: str, m: tarfile.TarInfo) -> None:
        if self.is_root:
            os.chown(leaf, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not m.issym():
            # The node was created by us just now and is not a symlink.
            os.chmod(leaf, m.mode & 0o7777, dir_fd=pfd)
        os.utime(leaf, ns=(int(m.mtime * 1e9),) * 2, dir_fd=pfd, follow_symlinks=False)

    def xattrs(self, fd: int, m: tarfile.TarInfo) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            # trusted.overlay.* would rewrite overlay's view of the layer: never from a tar.
            if not name.startswith(_XATTR_OK) or name.startswith("trusted.overlay."):
                continue
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            try:
                os.setxattr(fd, name, raw)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise

    def finish_dirs(self) -> None:
        """Directory owners, modes and times last: writing children changes them."""
        self.res.forget()
        for key, m in reversed(self.dirs):
            pfd = self.res.existing_dir(list(key[:-1]))
            if pfd is None:
                continue  # deleted by a later whiteout: never recreate it
            try:
                fd = os.open(key[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
            except OSError:
                continue  # replaced by a later entry
            finally:
                os.close(pfd)
            try:
                self.metadata_fd(fd, m)
            finally:
                os.close(fd)


def remove_at(dfd: int, name: str) -> None:
    """rm -rf of `name` inside dir fd `dfd`, never following symlinks."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
    try:
        for child in os.listdir(fd):
            remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)


def unpack(blob: BinaryIO, dest: str, whiteouts: str = "overlay",
           on_read=None) -> tuple[str, int]:
    """Apply a (possibly compressed) layer tar to `dest`. Returns (diff ID, tar size).

    `on_read(n)` is called with the count of blob bytes consumed so far."""
    # A source still being written (content.store.Follower) may block a read:
    # cancel it on failure so the inflating thread can be joined.
    cancel = getattr(blob, "cancel", None)
    if on_read is not None:
        blob = _CountingReader(blob, on_read)
    reader = _Inflater(decompressed(blob))
    u = Unpacker(dest, whiteouts)
    ok = False
    try:
        with tarfile.open(fileobj=reader, mode="r:") as tf:
            u.apply(tf)
        reader.drain()
        ok = True
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as exc:
        why = (str(exc).splitlines() or ["unreadable"])[0]
        raise DataError(f"layer: not a valid tar stream ({why})") from exc
    except Exception as exc:  # zstandard raises its own error type
        if type(exc).__name__ == "ZstdError":
            raise DataError(f"layer: bad zstd stream ({exc})") from exc
        raise
    finally:
        if not ok and cancel is not None:
            cancel()
        reader.close()
        u.close()
    return "sha256:" + reader.h.hexdigest(), reader.n
