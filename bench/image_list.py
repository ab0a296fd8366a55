"""`ketch images` with 200 images: wall time of the whole command, and of the listing alone.

200 distinct images (each its own config, all on busybox's one layer, each
tagged) are created in a fresh KETCH_ROOT, then:

    cli        ketch images                    whole process: interpreter start, imports, query, table
    cli-json   ketch images --format json
    python     engine.images.list_rows()        in-process: SQL + JSON decoding of 200 configs
    floor      ketch --version                  the CLI's own start (interpreter + click), no work
    baseline   python -c pass                   the interpreter's own start, for scale
    docker     docker images                    with --docker: the same 200 images (ketch save |
                                                docker load) in a private dockerd (no bridge,
                                                no iptables, vfs), for reference

Usage: .venv/bin/python bench/image_list.py [--images 200] [--rounds 15] [--docker]
Prints a Markdown table (median and best of the rounds, ms) and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
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


@contextlib.contextmanager
def private_dockerd(tmp: str):
    """A throw-away dockerd: own data root, socket, exec root; no bridge, no iptables."""
    run = tempfile.mkdtemp(prefix="kdb")
    sock = f"{run}/docker.sock"
    proc = subprocess.Popen(
        ["dockerd", "--data-root", f"{tmp}/docker", "--exec-root", f"{run}/exec",
         "--pidfile", f"{run}/docker.pid", "-H", f"unix://{sock}", "--bridge", "none",
         "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
         "--storage-driver", "vfs"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    cli = ["docker", "-H", f"unix://{sock}"]
    try:
        for _ in range(600):
            if subprocess.run([*cli, "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        yield cli
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        subprocess.run(["umount", "-R", "-l", f"{tmp}/docker"], capture_output=True)
        shutil.rmtree(run, ignore_errors=True)


def docker_rows(tmp: str, rounds: int) -> list[float]:
    from ketch.engine import db, images

    names = [r["Repository"] + ":" + r["Tag"] for r in images.list_rows(db.connect())]
    with open(f"{tmp}/all.tar", "wb") as f:
        subprocess.run([KETCH, "save", *names], stdout=f, check=True)
    with private_dockerd(tmp) as cli:
        subprocess.run([*cli, "load", "-q", "-i", f"{tmp}/all.tar"], check=True,
                       stdout=subprocess.DEVNULL)
        n = len(subprocess.run([*cli, "images", "-q"], capture_output=True,
                               text=True).stdout.split())
        assert n == len(names), n
        return timed([*cli, "images"], rounds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--docker", action="store_true", help="Also time docker images.")
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
        # Round robin, so a burst of load hits every command alike.
        cmds = {"ketch images": [KETCH, "images"],
                "ketch images --format json": [KETCH, "images", "--format", "json"],
                "ketch --version (CLI floor)": [KETCH, "--version"],
                "python -c pass (interpreter start)": [sys.executable, "-c", "pass"]}
        res: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.rounds):
            for k, cmd in cmds.items():
                res[k] += timed(cmd, 1)
        res["list_rows() in-process"] = inproc
        if args.docker and shutil.which("dockerd"):
            res["docker images (private dockerd, same images)"] = docker_rows(tmp, args.rounds)
    print(f"| {args.images} images, {args.rounds} rounds | median ms | best ms |")
    print("|---|---:|---:|")
    for k, v in res.items():
        print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} |")
    print(f"\nload average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
