"""Pull speed: `ketch pull` vs `skopeo copy` + `umoci unpack`, same image, same run.

A ~100 MB (compressed) image of several layers (busybox, then layers of many
files, mostly incompressible with some text) is pushed into a local
docker-registry (127.0.0.1, plain http). Each round pulls it from scratch:

    ketch   ketch pull -q <ref>            fresh KETCH_ROOT: blobs + layer snapshots, ready to run
    skopeo  skopeo copy docker://<ref> oci:<dir>:t  then  umoci unpack --image <dir>:t <bundle>

Usage: .venv/bin/python bench/pull_registry.py [--rounds 3] [--mb 100] [--json out.json]
       [--rate MBPS]      every tool pulls through a proxy that sends each blob at
                          MBPS MB/s per connection (a slower link than loopback)
       [--baseline DIR]   also time `ketch pull` of another source tree (PYTHONPATH=DIR),
                          e.g. an older commit: `git archive <rev> | tar -x -C DIR`
Prints a Markdown table (median wall time, throughput over the compressed size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.registry.registry_images import (  # noqa: E402
    build_layout,
    busybox_files,
    skopeo_push,
)
from tests.integration.registry.registry_servers import start_registry  # noqa: E402

KETCH = str(REPO / ".venv" / "bin" / "ketch")


def make_layers(total_mb: int, n_layers: int = 4) -> list[dict]:
    rnd = random.Random(42)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"kernel", b"layer", b"overlay"]
    layers = [busybox_files()]
    per_layer = (total_mb << 20) // n_layers
    for i in range(n_layers):
        files: dict = {f"data{i}": None}
        size, n = 0, 0
        while size < per_layer:
            if n % 4 == 3:  # some compressible text, like configs and scripts
                data = b" ".join(rnd.choice(words) for _ in range(8000))
            else:
                data = os.urandom(rnd.randint(20_000, 400_000))
            files[f"data{i}/f{n:05d}"] = data
            size += len(data)
            n += 1
        layers.append(files)
    return layers


def timed(cmds: list[list[str]], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys of the commands themselves)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--json", default="")
    ap.add_argument("--baseline", default="")
    ap.add_argument("--rate", type=float, default=0)
    args = ap.parse_args()
    for tool in ("skopeo", "umoci", "docker-registry"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed")
    work = Path(tempfile.mkdtemp(prefix="ketch-bench-pull-"))
    reg = start_registry(work / "registry")
    try:
        manifest = build_layout(work / "layout", make_layers(args.mb), compresslevel=1)
        compressed = sum(d["size"] for d in manifest["layers"])
        ref = f"{reg.host}/bench/pull:1"
        skopeo_push(work / "layout", "latest", ref)
        if args.rate:
            from tests.integration.registry.test_registry_resume import ThrottlingProxy

            proxy = ThrottlingProxy(reg.host, int(args.rate * 1e6))
            ref = f"{proxy.host}/bench/pull:1"
        names = ["ketch", "skopeo+umoci"] + (["ketch (baseline)"] if args.baseline else [])
        results: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            round_dir = work / f"round{r}"
            env = dict(os.environ, KETCH_ROOT=str(round_dir / "ketch-root"),
                       KETCH_RUNROOT=str(round_dir / "ketch-run"),
                       KETCH_CONFIG=str(round_dir / "ketch-config"))
            oci = round_dir / "oci"
            runs = {"ketch": [[KETCH, "pull", "-q", ref]],
                    "skopeo+umoci": [
                        ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                         f"docker://{ref}", f"oci:{oci}:t"],
                        ["umoci", "unpack", "--image", f"{oci}:t", str(round_dir / "bundle")]]}
            if args.baseline:
                runs["ketch (baseline)"] = [[KETCH, "pull", "-q", ref]]
            for name, cmds in runs.items():
                run_env = env
                if name == "ketch (baseline)":
                    run_env = dict(env, PYTHONPATH=args.baseline,
                                   KETCH_ROOT=str(round_dir / "base-root"))
                wall, used = timed(cmds, run_env)
                results[name].append(wall)
                cpu[name].append(used)
            shutil.rmtree(round_dir)
        mb = compressed / 1e6
        rows = []
        for name, times in results.items():
            med = statistics.median(times)
            rows.append((name, med, mb / med, statistics.median(cpu[name]), times))
        base = rows[1][1]
        link = f", blobs at {args.rate:g} MB/s per connection" if args.rate else ""
        print(f"image: {len(manifest['layers'])} layers, {mb:.1f} MB compressed{link}; "
              f"{args.rounds} rounds, median; load average {os.getloadavg()[0]:.1f}")
        print("| tool | wall (s) | MB/s | vs skopeo+umoci | CPU user+sys (s) | runs (s) |")
        print("|---|---|---|---|---|---|")
        for name, med, tput, used, times in rows:
            print(f"| {name} | {med:.2f} | {tput:.1f} | {base / med:.2f}x | {used:.2f} | "
                  f"{', '.join(f'{t:.2f}' for t in times)} |")
        if args.json:
            Path(args.json).write_text(json.dumps({"compressed_bytes": compressed,
                                                   "wall": results, "cpu": cpu}, indent=1))
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
