"""Layers unpacked out of chain order, while their blobs download.

With the overlay snapshotter a layer's directory holds only that layer's
changes (whiteouts are stored as overlay whiteouts), so it does not depend
on its parent's content: every layer of an image can be unpacked at the
same time, and each one while its blob is still arriving. A layer is
*staged* here (unpacked into the snapshotter's `.new-<key>-<pid>` directory,
no database access, any thread) and *published* in chain order by the
thread that owns the database connection (`ImageStore.publish_layer`).

Nothing unverified is ever published: a streamed unpack reads the blob's
ingest through a follower that reaches end of data only after the blob's
size and digest verified on commit, and the uncompressed stream must hash
to the layer's diff_id. A failure discards the staged directory; a kill
leaves it for GC (its pid is gone) and leaves the ingest for the next pull
to resume.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DataError, KetchError
from ketch.oci import digest as _digest
from ketch.oci.record import Record

#: fetch(writer, on_bytes) downloads a blob into a content-store writer
Fetch = Callable[..., None]
#: progress(kind, done, total): kind "download" (blob bytes) or "extract"
Progress = Callable[[str, int, int], None]


class Stopped(KetchError):
    """The pull was stopped (another layer failed); raised inside workers."""


class Staged(Record):
    fs: Path          # unpacked, not yet committed
    chain: str
    diff_id: str
    size: int


def stage_from(store, source: BinaryIO, blob: str, diff_id: str, chain: str,
               on_read: Callable[[int], None] | None = None) -> Staged:
    """Unpack `source` (the layer blob, compressed or not) into a staged directory."""
    from ketch.image.unpack import unpack

    if store.snap.whiteouts != "overlay":
        raise DataError("staged unpack needs the overlay snapshotter")
    fs = store.snap.begin_layer(_digest.hex_of(chain), [])
    try:
        got, _n = unpack(source, str(fs), store.snap.whiteouts, on_read)
        if got != diff_id:
            raise DataError(f"layer {blob}: uncompressed content {got} does not match "
                            f"diff_id {diff_id}")
        return Staged(fs, chain, diff_id, store.snap.layer_size(fs, []))
    except BaseException:
        store.snap.abort_layer(fs)
        raise


def stage_blob(store, desc: dict, diff_id: str, chain: str, progress: Progress | None,
               stop: threading.Event) -> Staged:
    """Stage a layer whose blob is already committed."""
    total = desc.get("size") or store.content.size(desc["digest"])

    def on_read(n: int) -> None:
        if stop.is_set():
            raise Stopped("pull stopped")
        if progress:
            progress("extract", n, total)

    with store.content.open(desc["digest"]) as f:
        return stage_from(store, f, desc["digest"], diff_id, chain, on_read)


def stage_streaming(store, desc: dict, diff_id: str, chain: str, fetch: Fetch,
                    progress: Progress | None, stop: threading.Event) -> Staged | None:
    """Download `desc` into the content store and unpack it at the same time.

    Returns None when the blob was committed by someone else meanwhile (the
    caller stages it from the blob). The download resumes an existing ingest;
    the unpack reads the ingest from byte 0 either way."""
    dig, size = desc["digest"], desc["size"]
    with store.content.writer(dig, dig, size) as w:
        if w.exists:
            w.commit()
            return None
        follower = w.follow()
        box: dict = {}
        failed = threading.Event()   # the unpack failed: stop downloading

        def on_bytes(n: int) -> None:
            if stop.is_set() or failed.is_set() or follower.cancelled:
                raise Stopped("pull stopped")
            if progress:
                progress("download", n, size)

        def unpack_side() -> None:
            try:
                box["staged"] = stage_from(store, follower, dig, diff_id, chain)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
                failed.set()

        t = threading.Thread(target=unpack_side, name="ketch-unpack", daemon=True)
        t.start()
        ok = False
        try:
            fetch(w, on_bytes)
            w.commit()          # size and digest: DataError, and the ingest is dropped
            ok = True
        except Stopped:
            if "error" not in box:
                raise
        finally:
            w.end_follow(ok)    # the unpack sees EOF only now, and only if verified
            t.join()
            follower.close()
        if "error" in box:     # the unpack's own failure (it stopped the download)
            raise box["error"]
        return box["staged"]


def discard(store, staged: Staged | None) -> None:
    if staged is not None:
        store.snap.abort_layer(staged.fs)
