"""Storage for N containers of one image: overlay (shared layers) vs copy snapshots.

For each snapshotter, a fresh KETCH_ROOT gets the image (busybox, or
debian:bookworm with --debian, bootstrapped once per root), then N container
snapshots are prepared (what `ketch create` does) and each writes a 4 KiB
file into its own layer (written into the snapshot directory, no mount
needed). Disk use is `du` of the snapshots directory (st_blocks, hardlinks
once) plus the blobs.

Usage: .venv/bin/python bench/image_sharing.py [--containers 20] [--debian]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(snapshotter: str, n: int, base: str) -> dict:
    from ketch.engine import db, images
    from ketch.snapshot.base import disk_usage

    os.environ["KETCH_SNAPSHOTTER"] = snapshotter
    conn = db.connect()
    rec = images.bootstrap(conn, base)
    store = images.store(conn)
    t = time.perf_counter()
    for i in range(n):
        images.prepare_rootfs(conn, rec, f"c{i}")
        (store.snap.fs(f"c{i}") / "note").write_bytes(os.urandom(4096))
    per = (time.perf_counter() - t) / n * 1000
    df = images.disk_usage(conn)
    snaps = disk_usage(store.snap.root)
    blobs = df["BlobsSize"]
    for i in range(n):
        images.remove_rootfs(conn, f"c{i}")
    conn.close()
    return {"image": rec.size, "snapshots": snaps, "blobs": blobs, "per_ms": per}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--debian", action="store_true")
    args = ap.parse_args()
    base = "debian:bookworm" if args.debian else "busybox"
    print(f"| {base}, {args.containers} containers | image | snapshots on disk | "
          f"per container | prepare ms/container |")
    print("|---|---:|---:|---:|---:|")
    for snap in ("overlay", "copy"):
        with tempfile.TemporaryDirectory(prefix="ketch-bench-share-") as tmp:
            os.environ["KETCH_ROOT"] = tmp
            r = measure(snap, args.containers, base)
        extra = (r["snapshots"] - r["image"]) / args.containers
        print(f"| {snap} | {r['image'] / 1e6:.1f} MB | {r['snapshots'] / 1e6:.1f} MB | "
              f"{extra / 1e3:.1f} kB | {r['per_ms']:.1f} |")


if __name__ == "__main__":
    main()
