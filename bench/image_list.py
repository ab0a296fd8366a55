"""`ketch images` with 200 images: wall time of the whole command, and of the listing alone.

200 distinct images (each its own config, all on busybox's one layer, each
tagged) are created in a fresh KETCH_ROOT, then:

    cli        ketch images                    whole process: interpreter start, imports, query, table
    cli-json   ketch images --format json
    python     engine.images.list_rows()        in-process: SQL + JSON decoding of 200 configs
    floor      ketch --version                  the CLI's own start (interpreter + argv), no work
    baseline   python -c pass                   the interpreter's own start, for scale
    docker     docker images                    with --docker: the same 200 images (ketch save |
                                                docker load) in a private dockerd (no bridge,
                                                no iptables, vfs), for reference
    ps         ketch ps -a, ketch --help        with --ps N: N created containers (root)
    run        ketch run --rm --network none busybox true    with --run (root)

With --before DIR (a copy of the tree before a change, e.g. `git archive REV |
tar -x -C DIR`) every ketch command is also timed with DIR's code, round robin
with the current tree; both then start through the same `python -c` launcher
(PYTHONPATH=tree), so the two columns differ only by the code.

Usage: .venv/bin/python bench/image_list.py [--images 200] [--rounds 15] [--docker]
           [--ps 100] [--run] [--before DIR]
Prints a Markdown table (median and best of the rounds, ms) and the load average.
Bytecode is cached (PYTHONDONTWRITEBYTECODE is dropped), as in a user's install.
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


def timed(cmd: list[str], rounds: int, env: dict | None = None) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
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


LAUNCH = "import sys\nfrom ketch.cli.main import main\nmain()"


def ketch_cmds(args, tree: Path | None, tag: str, env: dict) -> dict[str, tuple[list, dict]]:
    """The timed ketch commands: name -> (argv, env); tree None = the installed entry point."""
    def cli(*words: str) -> tuple[list, dict]:
        if tree is None:
            return [KETCH, *words], env
        return [sys.executable, "-P", "-c", LAUNCH, *words], {**env, "PYTHONPATH": str(tree)}
    out = {f"ketch images{tag}": cli("images"),
           f"ketch images --format json{tag}": cli("images", "--format", "json"),
           f"ketch --version (CLI floor){tag}": cli("--version")}
    if args.ps:
        out[f"ketch ps -a ({args.ps} containers){tag}"] = cli("ps", "-a")
        out[f"ketch --help{tag}"] = cli("--help")
    if args.run:
        out[f"ketch run --rm --network none busybox true{tag}"] = cli(
            "run", "--rm", "--network", "none", "busybox", "true")
    return out


def create_containers(n: int, env: dict) -> None:
    for _ in range(n):
        subprocess.run([KETCH, "create", "--network", "none", "busybox", "true"], env=env,
                       check=True, stdout=subprocess.DEVNULL)


def remove_containers(env: dict) -> None:
    ids = subprocess.run([KETCH, "ps", "-aq", "--no-trunc"], env=env, capture_output=True,
                         text=True).stdout.split()
    for i in range(0, len(ids), 50):
        subprocess.run([KETCH, "rm", "-f", *ids[i:i + 50]], env=env, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--docker", action="store_true", help="Also time docker images.")
    ap.add_argument("--ps", type=int, default=0, help="Also time ps -a with N containers.")
    ap.add_argument("--run", action="store_true", help="Also time run --rm (root).")
    ap.add_argument("--before", type=Path, help="Also time the CLI of this tree.")
    args = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)   # a user's ketch has its bytecode cached
    with tempfile.TemporaryDirectory(prefix="ketch-bench-images-") as tmp:
        os.environ.update(KETCH_ROOT=tmp, KETCH_RUNROOT=f"{tmp}/run",
                          KETCH_CGROUP_PARENT=f"ketch/bench-images-{os.getpid()}")
        env = dict(os.environ)
        try:
            res = measure(args, tmp, env)
        finally:
            if args.ps or args.run:
                remove_containers(env)
            if args.run:
                from ketch.bench.probes import remove_cgroup_tree
                remove_cgroup_tree(env["KETCH_CGROUP_PARENT"])
    print(f"| {args.images} images, {args.rounds} rounds | median ms | best ms |")
    print("|---|---:|---:|")
    for k, v in res.items():
        print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} |")
    print(f"\nload average: {os.getloadavg()[0]:.1f}")


def measure(args, tmp: str, env: dict) -> dict[str, list[float]]:
    populate(args.images)
    create_containers(args.ps, env)
    from ketch.engine import db, images

    conn = db.connect()
    inproc = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        images.list_rows(conn)
        inproc.append((time.perf_counter() - t) * 1000)
    after = ketch_cmds(args, REPO if args.before else None, "", env)
    before = ketch_cmds(args, args.before, " (before)", env) if args.before else {}
    # Round robin (each command next to its before twin), so a burst of load hits all alike.
    cmds, twins = {}, list(before.items())
    for i, (k, v) in enumerate(after.items()):
        cmds[k] = v
        if twins:
            cmds.update([twins[i]])
    cmds["python -c pass (interpreter start)"] = ([sys.executable, "-c", "pass"], env)
    for cmd, e in cmds.values():   # warm-up: page cache, bytecode written once
        timed(cmd, 1, e)
    res: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.rounds):
        for k, (cmd, e) in cmds.items():
            res[k] += timed(cmd, 1, e)
    res["list_rows() in-process"] = inproc
    if args.docker and shutil.which("dockerd"):
        res["docker images (private dockerd, same images)"] = docker_rows(tmp, args.rounds)
    return res


if __name__ == "__main__":
    main()
