"""Private Docker and Podman engines that drive ketch-runc, and their clean-up.

Each engine keeps everything it writes in one temp dir of its own and
touches no configuration of the host:

* dockerd: its own --data-root, --exec-root, -H unix socket, --pidfile and an
  empty --config-file; no bridge, no iptables or ip-forward changes (so
  containers run with --network none); the vfs storage driver (no overlay
  mounts to leave behind); container cgroups below `/<parent>/docker`;
  `--add-runtime ketch=<ketch-runc>`; and the nofile/nproc ulimits this host
  allows (dockerd's defaults are above its hard limits).
* podman: its own --root, --runroot, --tmpdir, a private containers.conf
  (CONTAINERS_CONF: cgroupfs, file events, the same ulimits), vfs, and
  `--runtime <ketch-runc>`; cgroups below `/<parent>/podman`.

The image is ketch's own busybox (`ketch bootstrap busybox`, `ketch save`),
loaded with `docker load` / `podman load`: no registry is needed.

`leftovers()` lists what an engine left behind after `stop()`: processes
whose command line names its dir or that sit in its cgroups, mounts under
its dir, container cgroups. The test session and bench/interop_start.py
both use this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ketch.bench import probes

ULIMITS = ("nofile=1024:1024", "nproc=4096:4096")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class EngineError(Exception):
    """The engine could not be started or did not answer."""


def missing_tools(*names: str) -> list[str]:
    return [n for n in names if not shutil.which(n)]


def busybox_tar(ketch: str, workdir: Path) -> Path:
    """ketch's busybox image saved as a tar that `docker load` and `podman load` read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
    env.update(KETCH_ROOT=str(workdir / "ketch-root"), KETCH_RUNROOT=str(workdir / "ketch-run"))
    out = workdir / "busybox.tar"
    for args in (["bootstrap", "busybox"], ["save", "busybox", "-o", str(out)]):
        r = subprocess.run([ketch, *args], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise EngineError(f"ketch {' '.join(args)}: {r.stderr.strip()}")
    return out


def _engine_env() -> dict[str, str]:
    # A test's KETCH_* variables must not reach engine processes that outlive it.
    return {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}


class Engine:
    """One private engine: `engine(*args)` runs its CLI and returns the CompletedProcess."""

    name = ""

    def __init__(self, runtime: str, cgroup_parent: str):
        self.runtime = runtime
        self.cgroup_parent = cgroup_parent.strip("/")
        # Short and in /tmp: dockerd and containerd put unix sockets below it.
        self.dir = Path(tempfile.mkdtemp(prefix=f"ketch-{self.name}-"))
        self.cli: list[str] = []
        self.env = _engine_env()
        self.extra_runtimes: dict[str, str] = {}  # dockerd --add-runtime name=path

    def __call__(self, *args: str, check: bool = False, timeout: float = 120,
                 input: str | None = None) -> subprocess.CompletedProcess:
        # No stdin unless given: CI may run us with none, and a CLI must not read ours.
        stdin = None if input is not None else subprocess.DEVNULL
        # cwd: podman's conmon inherits it and writes an `oom` note there after an OOM kill.
        proc = subprocess.run([*self.cli, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, input=input, stdin=stdin,
                              cwd=self.dir)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} -> {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    def run_args(self, runtime: str = "ketch") -> list[str]:
        """`run` plus the flags every test container needs on this engine."""
        raise NotImplementedError

    def load(self, tar: Path) -> None:
        self("load", "-i", str(tar), check=True)

    def containers(self) -> list[str]:
        return self("ps", "-aq", check=True).stdout.split()

    def stop(self) -> None:
        raise NotImplementedError

    def container_cgroups(self) -> list[str]:
        """Cgroups of containers still there: <parent>/<engine>/<container>.

        Podman's <parent>/podman/conmon (shared by every conmon) is not one.
        """
        below = {d.split(f"/{self.cgroup_parent}", 1)[1].strip("/")
                 for d in _cgroup_dirs(self.cgroup_parent)}
        return sorted(c for c in below if c.count("/") == 1 and not c.endswith("/conmon"))

    # -- what is left behind -------------------------------------------------

    def leftovers(self) -> list[str]:
        found = []
        procs = sorted(probes.pids_mentioning(str(self.dir)) | probes.cgroup_pids(self.cgroup_parent))
        if procs:
            found.append(f"processes {procs}")
        mounts = probes.mounts_under(str(self.dir))
        if mounts:
            found.append(f"mounts {mounts}")
        cgroups = self.container_cgroups()
        if cgroups:
            found.append(f"container cgroups {cgroups}")
        return found

    def purge(self) -> None:
        """Remove what `leftovers()` would report, then the engine's dir and cgroups."""
        for pid in probes.pids_mentioning(str(self.dir)) | probes.cgroup_pids(self.cgroup_parent):
            _kill(pid)
        for m in probes.mounts_under(str(self.dir)):   # deepest first
            subprocess.run(["umount", "-l", m], capture_output=True)
        probes.remove_cgroup_tree(self.cgroup_parent)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateDocker(Engine):
    name = "docker"

    def start(self, timeout: float = 60) -> None:
        d = self.dir
        (d / "daemon.json").write_text("{}\n")
        sock = f"unix://{d}/docker.sock"
        self.cli = ["docker", "-H", sock]
        ulimits = [a for u in ULIMITS for a in ("--default-ulimit", u)]
        runtimes = {"ketch": self.runtime, **self.extra_runtimes}
        add = [a for n, p in runtimes.items() for a in ("--add-runtime", f"{n}={p}")]
        self.log = open(d / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--config-file", str(d / "daemon.json"), "--data-root", str(d / "data"),
             "--exec-root", str(d / "exec"), "--pidfile", str(d / "dockerd.pid"), "-H", sock,
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--ip-masq=false", "--storage-driver", "vfs",
             "--cgroup-parent", f"/{self.cgroup_parent}/docker",
             *add, *ulimits],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while self("version", "-f", "{{.Server.Version}}").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EngineError(f"dockerd did not start: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, n: int = 600) -> str:
        try:
            return (self.dir / "dockerd.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def run_args(self, runtime: str = "ketch") -> list[str]:
        return ["run", "--runtime", runtime, "--network", "none"]

    def stop(self) -> None:
        """Remove every container, then SIGTERM dockerd (it stops its containerd) and wait."""
        if getattr(self, "proc", None) is None:
            return
        if self.proc.poll() is None:
            ids = self("ps", "-aq").stdout.split()
            if ids:
                self("rm", "-f", *ids)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # dockerd binds the host's netns here for the first --network host container and
        # leaves it mounted at exit (it does so with runc too): not a runtime's leftover.
        host_ns = str(self.dir / "exec/netns/default")
        if host_ns in probes.mounts_under(host_ns):
            subprocess.run(["umount", host_ns], capture_output=True)
        # containerd is dockerd's child and goes with it; give its shims a moment.
        deadline = time.monotonic() + 10
        while probes.pids_mentioning(str(self.dir)) and time.monotonic() < deadline:
            time.sleep(0.1)


class PrivatePodman(Engine):
    name = "podman"

    def start(self) -> None:
        d = self.dir
        for sub in ("root", "run", "tmp"):
            (d / sub).mkdir()
        ulimits = ", ".join(f'"{u}"' for u in ULIMITS)
        (d / "containers.conf").write_text(
            f"[containers]\ndefault_ulimits = [{ulimits}]\n\n"
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        # Only this file is read when CONTAINERS_CONF is set: the host's config is ignored.
        self.env["CONTAINERS_CONF"] = str(d / "containers.conf")
        self.cli = ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"),
                    "--tmpdir", str(d / "tmp"), "--storage-driver", "vfs",
                    "--runtime", self.runtime]
        self("info", "--format", "{{.Host.OCIRuntime.Path}}", check=True)

    def run_args(self, runtime: str = "ketch") -> list[str]:
        del runtime  # podman's runtime is the global --runtime: see with_runtime()
        return ["run", "--network", "none", "--cgroup-parent", f"/{self.cgroup_parent}/podman"]

    def with_runtime(self, path: str) -> list[str]:
        """This engine's command line with another OCI runtime (for comparisons)."""
        cli = list(self.cli)
        cli[cli.index("--runtime") + 1] = path
        return cli

    def stop(self) -> None:
        if self.cli:
            self("rm", "--all", "--force", "--time", "0")
            self("rmi", "--all", "--force")

    def _runtime_states(self) -> list[str]:
        # Podman gives the runtime no --root (conmon drops the environment too), so
        # ketch-runc keeps these containers' state in its default root: find ours by bundle.
        r = subprocess.run([self.runtime, "list", "--format", "json"], capture_output=True,
                           text=True, timeout=30, env=self.env)
        return [c["id"] for c in json.loads(r.stdout or "[]")
                if str(c.get("bundle", "")).startswith(f"{self.dir}/")]

    def leftovers(self) -> list[str]:
        found = super().leftovers()
        states = self._runtime_states()
        if states:
            found.append(f"ketch-runc state of {states}")
        return found

    def purge(self) -> None:
        for cid in self._runtime_states():
            subprocess.run([self.runtime, "delete", "--force", cid], capture_output=True,
                           env=self.env)
        super().purge()


# -- host probes (read only) ---------------------------------------------------

def _cgroup_dirs(parent: str) -> list[str]:
    """`parent` and every directory below it, in every hierarchy."""
    found = []
    for hier in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()] if CGROUP_ROOT.is_dir() else []:
        if (hier / parent).is_dir():
            found.extend(dirpath for dirpath, _d, _f in os.walk(hier / parent))
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
