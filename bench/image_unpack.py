"""Layer unpacking, the critical path of a pull: ketch's safe unpacker vs GNU tar.

One synthetic gzip layer (10,000 small files in 100 directories plus 20 files
of 2 MiB, 64 MB uncompressed) is unpacked into an empty directory on tmpfs
(/dev/shm), so the disk does not decide:

    ketch   ketch.image.unpack.unpack(blob, dir, "overlay")   openat2-resolved, diff ID hashed
    tar     tar -xzf layer.tgz -C dir                          no containment, no hashing

Usage: .venv/bin/python bench/image_unpack.py [--rounds 5]
Prints a Markdown table (median and best seconds, rounds round robin).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_layer(path: str) -> int:
    rnd = os.urandom(1 << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(100):
            ti = tarfile.TarInfo(f"usr/share/d{d}")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
            for f in range(100):
                data = rnd[f * 100:f * 100 + (f * 37) % 4000]
                ti = tarfile.TarInfo(f"usr/share/d{d}/f{f}")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        for i in range(20):
            ti = tarfile.TarInfo(f"big{i}")
            ti.size = 2 * len(rnd)
            tf.addfile(ti, io.BytesIO(rnd * 2))
    raw = buf.getvalue()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw, 1))
    return len(raw)


def main() -> None:
    from ketch.image.unpack import unpack

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="ketch-bench-unpack-", dir=base) as tmp:
        blob = f"{tmp}/layer.tgz"
        size = make_layer(blob)
        res: dict[str, list[float]] = {"ketch unpack": [], "tar -xzf": []}
        for _ in range(args.rounds):
            for name in res:
                dest = tempfile.mkdtemp(dir=tmp)
                t = time.perf_counter()
                if name == "tar -xzf":
                    subprocess.run(["tar", "-xzf", blob, "-C", dest], check=True)
                else:
                    with open(blob, "rb") as f:
                        unpack(f, dest, "overlay")
                res[name].append(time.perf_counter() - t)
                shutil.rmtree(dest)
    print(f"| {size / 1e6:.0f} MB layer, 10,020 files, tmpfs | median s | best s |")
    print("|---|---:|---:|")
    for k, v in res.items():
        print(f"| {k} | {statistics.median(v):.2f} | {min(v):.2f} |")
    print(f"\nload average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
