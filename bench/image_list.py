"""`ketch images` with 200 images: wall time of the whole command, and of the listing alone.

200 distinct images (each its own config, all on busybox's one layer, each
tagged) are created in a fresh KETCH_ROOT, then:

    cli        ketch images                    whole process: interpreter start, imports, query, table
    cli-json   ketch images --format json
    python     engine.images.list_rows()        in-process: SQL + JSON decoding of 200 configs
    floor      ketch --version                  the CLI's own start (interpreter + click), no work
    baseline   python -c pass                   the interpreter's own start, for scale

Usage: .venv/bin/python bench/image_list.py [--images 200] [--rounds 15]
Prints a Markdown table (median and best of the rounds, ms) and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
KETCH = str(REPO / ".venv" / "bin" / "ketch")


def populate(n: int) -> None:
    from ketch.engine import db, images
    from ketch.image.importer import create_image

    conn = db.connect()
    base = images.bootstrap(conn, "busybox")
    store = images.store(conn)
    for i in range(n - 1):
        create_image(store, base, None, {"Cmd": ["sh"], "Labels": {"n": str(i)}},
                     [f"bench/app{i}:v{i % 7}"], {"created_by": f"LABEL n={i}"})
    rows = images.list_rows(conn)
    assert len(rows) == n, len(rows)


def timed(cmd: list[str], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ketch-bench-images-") as tmp:
        os.environ["KETCH_ROOT"] = tmp
        populate(args.images)
        from ketch.engine import db, images

        conn = db.connect()
        inproc = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            images.list_rows(conn)
            inproc.append((time.perf_counter() - t) * 1000)
        res = {
            "ketch images": timed([KETCH, "images"], args.rounds),
            "ketch images --format json": timed([KETCH, "images", "--format", "json"],
                                                args.rounds),
            "list_rows() in-process": inproc,
            "ketch --version (CLI floor)": timed([KETCH, "--version"], args.rounds),
            "python -c pass (interpreter start)": timed([sys.executable, "-c", "pass"],
                                                        args.rounds),
        }
    print(f"| {args.images} images, {args.rounds} rounds | median ms | best ms |")
    print("|---|---:|---:|")
    for k, v in res.items():
        print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} |")
    print(f"\nload average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
