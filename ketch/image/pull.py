"""Getting an image's layers into the store: blobs fetched in a bounded pool into
the content store's resumable ingest, layers unpacked into snapshots.

With the overlay snapshotter every missing layer downloads and unpacks at
once, each while it streams in (ketch.image.layers stages it), and the
caller's thread publishes them in chain order; the copy snapshotter needs a
layer's parent tree, so there layers unpack in chain order as they land.
Only the caller's thread touches the database.

`repo` is anything with `fetch_blob(desc, writer, on_bytes)` (the registry
client); `where` names it in errors. Progress goes to `emit(id, status,
current, total)` with Docker's words, from worker threads too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ketch.errors import DataError
from ketch.image import layers as _layers
from ketch.oci import digest as _digest

Emit = Callable[[str, str, int, int], None]


def _say(emit: Emit | None, id_: str, status: str, current: int = 0, total: int = 0) -> None:
    if emit:
        emit(id_, status, current, total)


def fetch_layers(repo, where: str, store, layers: list[dict], diff_ids: list[str],
                 emit: Emit | None, workers: int = 3) -> bool:
    """Fetch and unpack what is missing; False if every layer was already there."""
    chains = _digest.chain_ids(diff_ids)
    content = store.content
    todo = []
    for desc, chain in zip(layers, chains, strict=True):
        short = _digest.short(desc["digest"])
        if content.exists(desc["digest"]) and store._has_snapshot(chain):
            _say(emit, short, "Already exists")
        else:
            _say(emit, short, "Pulling fs layer")
            todo.append(desc)
    if not todo:
        return False
    if store.snap.whiteouts == "overlay":
        _pull_concurrent(repo, where, store, layers, diff_ids, chains, emit, workers)
    else:
        _pull_in_order(repo, where, store, layers, diff_ids, todo, emit, workers)
    return True


def _pull_concurrent(repo, where: str, store, layers: list[dict], diff_ids: list[str],
                     chains: list[str], emit: Emit | None, workers: int) -> None:
    """Overlay: every missing layer downloads and unpacks at once in a bounded pool,
    each unpacking while it streams in; this thread publishes them in chain order."""
    stop = threading.Event()
    jobs: list = []
    first: dict = {}   # blob digest -> the job that downloads it (a blob may repeat)
    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="ketch-pull") as pool:
        for desc, diff_id, chain in zip(layers, diff_ids, chains, strict=True):
            has = store._has_snapshot(chain)   # the database: this thread only
            if has and store.content.exists(desc["digest"]):
                jobs.append(None)
                continue
            job = pool.submit(_layer_job, repo, where, store, desc, diff_id, chain, not has,
                              first.get(desc["digest"]), emit, stop)
            first.setdefault(desc["digest"], job)
            jobs.append(job)
        published = set()
        try:
            parent = None
            for i, (desc, job) in enumerate(zip(layers, jobs, strict=True)):
                staged = job.result() if job is not None else None
                if staged is not None:
                    store.publish_layer(staged, parent)
                    published.add(i)
                    _say(emit, _digest.short(desc["digest"]), "Pull complete")
                parent = chains[i]
        except BaseException:
            stop.set()   # workers stop between chunks; their ingests stay for a resume
            for job in jobs:
                if job is not None:
                    job.cancel()
            pool.shutdown(wait=True)
            for i, job in enumerate(jobs):
                if job is not None and i not in published and job.done() \
                        and not job.cancelled() and job.exception() is None:
                    _layers.discard(store, job.result())
            raise


def _layer_job(repo, where: str, store, desc: dict, diff_id: str, chain: str, unpack: bool,
               same_blob, emit: Emit | None, stop: threading.Event):
    """One layer (worker thread, no database): the staged snapshot, or None."""
    short = _digest.short(desc["digest"])

    def report(kind: str, done: int, total: int) -> None:
        _say(emit, short, "Downloading" if kind == "download" else "Extracting",
              done, total)

    if same_blob is not None:
        same_blob.result()   # an earlier layer downloads this blob
    if not unpack:
        fetch_blobs(repo, where, store.content, [desc], emit, stop)
        return None
    staged = None
    if not store.content.exists(desc["digest"]):
        done = [0]

        def fetch(writer, on_bytes) -> None:
            def tick(n: int) -> None:
                done[0] += n
                on_bytes(done[0])
            try:
                repo.fetch_blob(desc, writer, tick)
            except DataError as exc:
                raise DataError(f"pull {where}: {exc}") from None

        staged = _layers.stage_streaming(store, desc, diff_id, chain, fetch,
                                         report if emit else None, stop)
        _say(emit, short, "Download complete", desc["size"], desc["size"])
    if staged is None:
        _say(emit, short, "Extracting")
        staged = _layers.stage_blob(store, desc, diff_id, chain,
                                    report if emit else None, stop)
    return staged


def _pull_in_order(repo, where: str, store, layers: list[dict], diff_ids: list[str],
                   todo: list[dict], emit: Emit | None, workers: int) -> None:
    """Copy snapshotter: a layer is applied to a copy of its parent, so in chain
    order; downloads still run ahead in a bounded pool."""
    content = store.content
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="ketch-pull") as pool:
        futures: dict = {}
        for d in todo:  # an image may list one blob twice: fetch it once
            if d["digest"] not in futures and not content.exists(d["digest"]):
                futures[d["digest"]] = pool.submit(fetch_blobs, repo, where, content, [d],
                                                   emit, stop)
        try:
            chain = None
            for desc, diff_id in zip(layers, diff_ids, strict=True):
                fut = futures.get(desc["digest"])
                if fut is not None:
                    fut.result()
                short = _digest.short(desc["digest"])
                if desc in todo:
                    _say(emit, short, "Extracting")
                chain = store.ensure_layer(chain, desc["digest"], diff_id,
                                           progress=_extract_progress(emit, short))
                if desc in todo:
                    _say(emit, short, "Pull complete")
        except BaseException:
            stop.set()  # workers stop between chunks; their ingests stay for a resume
            for f in futures.values():
                f.cancel()
            raise


def _extract_progress(emit: Emit | None, short: str):
    """ensure_layer's (kind, blob, done, total) callback as Extracting events."""
    if emit is None:
        return None

    def report(kind: str, _blob: str, done: int, total: int) -> None:
        if kind == "extract":
            _say(emit, short, "Extracting", done, total)
    return report


def fetch_blobs(repo, where: str, content, descs: list[dict], emit: Emit | None,
                stop: threading.Event | None = None) -> None:
    """Download blobs into the content store (resuming an ingest left by a killed pull)."""
    for desc in descs:
        if content.exists(desc["digest"]):
            continue
        short = _digest.short(desc["digest"])
        done = [0]

        def tick(n: int, short=short, desc=desc, done=done) -> None:
            if stop is not None and stop.is_set():
                raise _layers.Stopped("pull stopped")
            done[0] += n
            _say(emit, short, "Downloading", done[0], desc["size"])

        with content.writer(desc["digest"], desc["digest"], desc["size"]) as w:
            if w.exists:  # another pull committed it while we waited for the lock
                w.commit()
                continue
            repo.fetch_blob(desc, w, tick if emit or stop else None)
            try:
                w.commit()
            except DataError as exc:
                raise DataError(f"pull {where}: {exc}") from None
        _say(emit, short, "Download complete", desc["size"], desc["size"])
