"""The content store: immutable blobs by digest, written through a verified ingest.

Layout under the root:

    blobs/sha256/<hex>            committed blobs, read-only, never rewritten
    ingest/<sha256(ref)>/         one in-progress write: data, ref, lock

A write goes to ingest/ first; `Writer.commit()` checks size and digest and
renames the data into blobs/ (a rename is atomic, so a killed writer leaves
only an ingest directory, never something that looks committed). The ingest
survives a crash, so the next writer of the same ref resumes at `offset`.
An exclusive flock on the ingest's lock file makes concurrent writers of one
ref take turns; the second sees the blob already committed (`Writer.exists`)
and writes nothing.

`Writer.follow()` reads an ingest while it is being written (a layer unpacks
as it downloads). The follower sees end of data only after the writer's
`end_follow(ok=True)`, which the caller gives after a successful commit, so
whatever consumes it to the end has consumed verified content.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import threading
from pathlib import Path

from ketch.errors import DataError, NotFound
from ketch.oci import digest as _digest

TYPE_CHECKING = False  # typing costs `ketch run` ~4 ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

_CHUNK = 1 << 20
_FOLLOW_STEP = 256 << 10


class ContentStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.ingest = self.root / "ingest"

    # -- reading -------------------------------------------------------------
    def path(self, digest: str) -> Path:
        algo, hexpart = _digest.parse(digest)
        return self.blobs / algo / hexpart

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def walk(self) -> Iterator[tuple[str, int]]:
        """Every committed blob as (digest, size)."""
        if not self.blobs.is_dir():
            return
        for algo_dir in sorted(self.blobs.iterdir()):
            for entry in os.scandir(algo_dir):
                if entry.is_file(follow_symlinks=False):
                    yield f"{algo_dir.name}:{entry.name}", entry.stat().st_size

    def verify(self, digest: str) -> str | None:
        """None if the blob's bytes hash to its name, else what is wrong."""
        algo, hexpart = _digest.parse(digest)
        h = hashlib.new(algo)
        try:
            with open(self.path(digest), "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            return "missing"
        if h.hexdigest() != hexpart:
            return f"content hashes to {algo}:{h.hexdigest()}"
        return None

    # -- writing -------------------------------------------------------------
    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store `data` and return its digest (DataError if it is not `expected`)."""
        dig = expected or _digest.of_bytes(data)
        if self.exists(dig) and expected is None:
            return dig
        with self.writer(f"put-{dig}", dig, len(data)) as w:
            if not w.exists:
                w.truncate()
                w.write(data)
                w.commit()
        return dig

    def writer(self, ref: str, expected_digest: str | None = None,
               expected_size: int | None = None) -> Writer:
        """A resumable, locked writer for `ref` (blocks while another holds the ref)."""
        if expected_digest:
            _digest.validate(expected_digest)
        return Writer(self, ref, expected_digest, expected_size)

    def delete(self, digest: str) -> bool:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def ingests(self) -> list[tuple[str, int]]:
        """In-progress writes as (ref, bytes written)."""
        out = []
        if self.ingest.is_dir():
            for d in self.ingest.iterdir():
                try:
                    ref = (d / "ref").read_text()
                    out.append((ref, (d / "data").stat().st_size))
                except OSError:
                    continue
        return out

    def expire_ingests(self, max_age: float) -> int:
        """Drop ingests untouched for `max_age` seconds whose writer is gone; bytes freed."""
        import time

        freed = 0
        if not self.ingest.is_dir():
            return 0
        for d in self.ingest.iterdir():
            try:
                fd = os.open(d / "lock", os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a live writer holds it
                data = d / "data"
                st = data.stat() if data.exists() else (d / "lock").stat()
                if time.time() - st.st_mtime > max_age:
                    freed += st.st_size if data.exists() else 0
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass
            finally:
                os.close(fd)
        return freed

    def abort_ingest(self, ref: str) -> None:
        shutil.rmtree(self.ingest / _ref_dir(ref), ignore_errors=True)


def _ref_dir(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()


class Writer:
    """One ingest. Use as a context manager: the lock is released on exit and an
    uncommitted ingest is kept for resumption (call abort() to drop it)."""

    def __init__(self, store: ContentStore, ref: str, expected: str | None,
                 size: int | None):
        self.store, self.ref, self.expected, self.expected_size = store, ref, expected, size
        self.dir = store.ingest / _ref_dir(ref)
        self._lock = self._take_lock()
        self.committed: str | None = None
        self.exists = bool(expected) and store.exists(expected)
        (self.dir / "ref").write_text(ref)
        self._file = open(self.dir / "data", "ab")
        self._hash = hashlib.sha256()
        self.offset = 0
        self._rehash()
        self._cond: threading.Condition | None = None   # set by follow()
        self._ended: bool | None = None                 # None: writing; True ok; False failed
        self._visible = 0                               # bytes followers may read

    def _take_lock(self) -> int:
        # The holder removes the ingest directory when done; a waiter that then
        # gets the lock on the unlinked file must start again on a fresh one.
        # mkdir(exist_ok=True) is not enough: it can meet the directory
        # (EEXIST) and then find it gone when it checks, as the holder removes it.
        while True:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                if os.path.lexists(self.dir) and not self.dir.is_dir():
                    raise
                continue
            try:
                fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(self.dir / "lock").st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _rehash(self) -> None:
        """Resume: hash what an earlier (perhaps killed) writer left behind."""
        with open(self.dir / "data", "rb") as f:
            while chunk := f.read(_CHUNK):
                self._hash.update(chunk)
                self.offset += len(chunk)

    def truncate(self) -> None:
        """Start over at offset 0 (a server that ignored our Range, say)."""
        self._file.truncate(0)
        self._hash = hashlib.sha256()
        self.offset = 0
        self._publish()

    def write(self, data: bytes) -> int:
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            raise DataError(f"blob {self.expected or self.ref}: more than the expected "
                            f"{self.expected_size} bytes")
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)
        # Followers are woken every _FOLLOW_STEP bytes, not per network chunk:
        # a wake-up per few kB costs more CPU than the unpacking it feeds.
        if self._cond is not None and self.offset - self._visible >= _FOLLOW_STEP:
            self._publish()
        return len(data)

    # -- following -------------------------------------------------------------
    def follow(self) -> Follower:
        """A reader of this ingest from byte 0 that waits for bytes still to come."""
        if self._cond is None:
            self._cond = threading.Condition()
        self._publish()
        return Follower(self)

    def end_follow(self, ok: bool) -> None:
        """No more bytes: followers see EOF (`ok`, the blob verified) or an error."""
        if self._cond is not None:
            with self._cond:
                if self._ended is None:
                    self._ended = ok
                    self._visible = self.offset   # ok: commit() flushed everything
                self._cond.notify_all()

    def _publish(self) -> None:
        """Make what was written visible to followers (bytes first, then the count)."""
        if self._cond is not None:
            self._file.flush()
            with self._cond:
                self._visible = self.offset
                self._cond.notify_all()

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self) -> str:
        """Verify size and digest, then publish the blob by rename. Returns its digest."""
        if self.exists:
            self.committed = self.expected
            self._drop()
            return self.committed
        got = self.digest()
        what = self.expected or self.ref
        if self.expected_size is not None and self.offset != self.expected_size:
            self._drop()
            raise DataError(f"blob {what}: size {self.offset}, expected {self.expected_size}")
        if self.expected and got != self.expected:
            self._drop()
            raise DataError(f"blob {what}: digest mismatch, content hashes to {got}")
        self._file.flush()
        os.fsync(self._file.fileno())
        target = self.store.path(got)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "data", 0o444)
        os.rename(self.dir / "data", target)
        self.committed = got
        self._drop()
        return got

    def abort(self) -> None:
        self._drop()

    def _drop(self) -> None:
        self._file.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end_follow(False)   # no-op once ended; wakes a follower on an error
        self.close()


class Follower:
    """Reads a Writer's ingest from its own fd (the data survives the commit's rename
    and the ingest's removal), blocking until the writer wrote more or ended."""

    def __init__(self, w: Writer):
        self.w, self.pos, self.cancelled = w, 0, False
        self.fd = os.open(w.dir / "data", os.O_RDONLY | os.O_CLOEXEC)

    def read(self, n: int = -1) -> bytes:
        n = n if n and n > 0 else _CHUNK
        w = self.w
        while True:
            if self.cancelled:
                raise DataError(f"blob {w.expected or w.ref}: reader cancelled")
            data = os.pread(self.fd, n, self.pos)
            if data:
                self.pos += len(data)
                return data
            with w._cond:
                # A truncate (server ignored Range) makes offset < pos until the
                # same bytes come again; digests decide at the end.
                while w._ended is None and w._visible <= self.pos and not self.cancelled:
                    w._cond.wait()
                if w._visible <= self.pos and w._ended is not None:
                    if w._ended:
                        return b""
                    raise DataError(f"blob {w.expected or w.ref}: download did not complete")

    def cancel(self) -> None:
        """The consumer gave up: a blocked read() raises, the writer may stop."""
        with self.w._cond:
            self.cancelled = True
            self.w._cond.notify_all()

    def readable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
