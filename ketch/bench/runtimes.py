"""Runtime adapters: one way to start, time and remove instances per runtime.

Every adapter drives its runtime through its public command line (ketch,
podman, docker) so the benchmark measures what a user runs and stays
independent of the engine's internals. Each adapter answers the same
questions: is it available here (and if not, why), run a command in the
foreground, start a detached instance, which host processes an instance
costs, where its bytes live on disk, and remove it.

Instances are named `kb-<run id>-<n>`, so every process, cgroup and
directory this run creates carries a token unique to it, and cleanup can find
and remove exactly those by id.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ketch.bench import probes
from ketch.bench.workloads import Timed, one_line, run_timed


class NotAvailable(Exception):
    """The runtime or the measurement cannot be done here; the message says why."""


@dataclass
class Instance:
    name: str
    id: str
    extra: dict = field(default_factory=dict)


@dataclass
class Workspace:
    """This run's private roots: every runtime stores into them, cleanup empties them."""

    dir: Path
    runroot: Path
    run_id: str
    cgroup_parent: str
    env: dict[str, str]
    _count: int = 0

    def name(self) -> str:
        self._count += 1
        return f"kb-{self.run_id}-{self._count}"

    def env_for(self, key: str) -> dict[str, str]:
        """Each runtime gets its own roots, so its disk figures start from empty."""
        # One letter under the short run root: unix socket paths must fit 108 bytes.
        run = self.runroot / key[0]
        return {**self.env, "KETCH_ROOT": str(self.dir / key / "root"),
                "KETCH_RUNROOT": str(run), "KETCH_RUNC_ROOT": str(run / "runc")}


class Runtime:
    """Base adapter; subclasses fill in the command lines."""

    key = ""
    label = ""
    kind = "container"  # or "vm"
    #: Where the I/O workload writes inside an instance: target name -> directory.
    io_targets: dict[str, str] = {"writable layer": "/", "volume": "/vol"}
    start_timeout = 60.0
    #: Shell run before httpd in the HTTP step (a full VM's network set-up).
    http_prefix = ""
    #: How a detached instance is started, for the `how` of a figure.
    start_verb = "`run -d`"

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.env = ws.env_for(self.key)
        self.version = ""
        #: Seconds to first output of the untimed warm-up run (cold caches), if any.
        self.cold_start: float | None = None
        #: Seconds each full-VM run spent building its disk (part of its start).
        self.create_seconds: list[float] = []
        #: Median start to first output, once measured (bounds the HTTP wait).
        self.typical_start: float | None = None

    # -- what subclasses implement ------------------------------------
    def check(self) -> None:
        """Raise NotAvailable with the reason when this runtime cannot run here."""

    def prepare(self) -> None:
        """Make the busybox image available (not timed)."""

    def run_fg(self, cmd: list[str], *, timeout: float, volume: Path | None = None) -> Timed:
        raise NotImplementedError

    def start(self, cmd: list[str], *, http_port: int | None = None,
              volume: Path | None = None) -> Instance:
        raise NotImplementedError

    def logs(self, inst: Instance) -> str:
        raise NotImplementedError

    def remove(self, inst: Instance) -> None:
        raise NotImplementedError

    def storage_roots(self) -> list[Path]:
        raise NotImplementedError

    def accel(self) -> str | None:
        """KVM or TCG for VMs; None for containers."""
        return None

    # -- shared --------------------------------------------------------
    def http_bind(self) -> tuple[str, bool]:
        """(address httpd binds to inside, whether the port is published)."""
        return "127.0.0.1", False

    def pids(self, inst: Instance) -> set[int]:
        """Host processes the instance costs: its cgroup(s), its monitor, their children."""
        found = set()
        for base in probes.cgroup_dirs(self.ws.cgroup_parent):
            for path in base.rglob("cgroup.procs"):
                where = str(path.parent.relative_to(base))
                if inst.id in where or inst.name in where:
                    found |= probes.read_pids(path)
        found |= probes.pids_mentioning(inst.id) | probes.pids_mentioning(inst.name)
        return probes.descendants(found)


class CliEngine(Runtime):
    """A runtime driven by a Docker-compatible command line."""

    image = "busybox:latest"
    run_flags: list[str] = []

    def base(self) -> list[str]:
        raise NotImplementedError

    def cmd(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        argv = [*self.base(), *args]
        try:
            return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise NotAvailable(f"`{' '.join(argv[-3:])}` timed out after {timeout:.0f} s") from exc
        except OSError as exc:
            raise NotAvailable(f"{argv[0]}: {exc.strerror}") from exc

    def ok(self, *args: str, timeout: float = 60.0) -> str:
        r = self.cmd(*args, timeout=timeout)
        if r.returncode != 0:
            raise NotAvailable(f"`{self.label} {args[0]}` failed: {one_line(r.stderr or r.stdout)}")
        return r.stdout

    def volume_flags(self, volume: Path | None) -> list[str]:
        return ["-v", f"{volume}:/vol"] if volume else []

    def extra_flags(self) -> list[str]:
        """Flags every `run` of this engine needs on this host."""
        return []

    def forget(self) -> None:
        """Remove what prepare() put outside the run's work directory (none by default)."""

    def run_fg(self, cmd, *, timeout, volume=None):
        argv = [*self.base(), "run", "--rm", *self.run_flags, *self.extra_flags(),
                *self.volume_flags(volume), self.image, *cmd]
        return run_timed(argv, env=self.env, timeout=timeout)

    def start(self, cmd, *, http_port=None, volume=None):
        name = self.ws.name()
        net = self.net_flags(http_port)
        out = self.ok("run", "-d", "--name", name, *net, *self.extra_flags(),
                      *self.volume_flags(volume),
                      self.image, *cmd, timeout=self.start_timeout)
        ident = out.strip().splitlines()[-1].strip() if out.strip() else name
        return Instance(name=name, id=ident)

    def net_flags(self, http_port: int | None) -> list[str]:
        if http_port is None:
            return self.run_flags
        bind, published = self.http_bind()
        flags = [f for f in self.run_flags if f not in ("--network", "none")]
        if published:
            return [*flags, "-p", f"127.0.0.1:{http_port}:{http_port}"]
        return [*flags, "--network", "host"]

    def logs(self, inst):
        r = self.cmd("logs", inst.id, timeout=30)
        return r.stdout + r.stderr

    def remove(self, inst):
        self.cmd("rm", "-f", inst.id, timeout=60)

    def leftovers(self) -> list[str]:
        """Names of containers of this run that still exist (should be none)."""
        r = self.cmd("ps", "-a", "--format", "{{.Names}}", timeout=30)
        return [n for n in r.stdout.split() if n.startswith(f"kb-{self.ws.run_id}")]


def _ketch_argv() -> list[str]:
    exe = Path(sys.executable).with_name("ketch")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ketch"]


class KetchContainer(CliEngine):
    key = "container"
    label = "ketch container"
    # Like podman and docker here: no network unless the step needs one (HTTP).
    run_flags = ["--network", "none"]

    def base(self):
        return _ketch_argv()

    def check(self):
        r = self.cmd("run", "--help", timeout=30)
        if r.returncode != 0:
            raise NotAvailable(f"`ketch run` is not available: {one_line(r.stderr)}")
        self.version = self.ok("--version", timeout=30).strip()

    def prepare(self):
        self.ok("bootstrap", "busybox", timeout=120)
        trial = self.run_fg(["echo", "ready"], timeout=self.start_timeout)
        self.cold_start = next((at for at, line in trial.line_times if "ready" in line), None)
        if self.cold_start is None:
            raise NotAvailable(f"`{self.label}` trial run failed: "
                               f"{one_line(trial.stderr or trial.stdout)}")

    def storage_roots(self):
        return [Path(self.env["KETCH_ROOT"]), Path(self.env["KETCH_RUNROOT"])]


class KetchMicroVM(KetchContainer):
    key = "microvm"
    label = "ketch micro-VM"
    kind = "vm"
    run_flags = ["--runtime", "vm", "--network", "none"]
    io_targets = {"VM disk (rootfs)": "/", "volume": "/vol"}
    start_timeout = 180.0

    def check(self):
        super().check()
        if not shutil.which("qemu-system-x86_64"):
            raise NotAvailable("qemu-system-x86_64 is not installed")

    def http_bind(self):
        return "0.0.0.0", True

    def accel(self):
        return vm_accel()


def vm_accel() -> str:
    """'TCG (why)' or 'KVM (why)' as ketch.vm.accel.describe() reports, else 'unknown (why)'."""
    try:
        from ketch.vm import accel
    except ImportError as exc:
        return f"unknown (ketch.vm.accel: {exc})"
    describe = getattr(accel, "describe", None)
    if not callable(describe):
        return "unknown (ketch.vm.accel has no describe())"
    try:
        info = describe()
    except Exception as exc:  # a probe failing must not stop the benchmark
        return f"unknown (describe: {exc})"
    if not isinstance(info, dict):
        return str(info)
    word = str(info.get("accelerator", "unknown"))
    word = word.upper() if word in ("kvm", "tcg") else word
    return f"{word} ({info['reason']})" if info.get("reason") else word


class Podman(CliEngine):
    key = "podman"
    label = "podman"
    image = "localhost/ketch-bench-busybox:latest"
    run_flags = ["--network", "none"]

    def base(self):
        d = self.ws.dir / "podman"
        return ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"),
                "--tmpdir", str(d / "tmp"), "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--runtime", shutil.which("runc") or "runc"]

    def check(self):
        if not shutil.which("podman"):
            raise NotAvailable("podman is not installed")
        if not shutil.which("runc"):
            raise NotAvailable("runc (podman's OCI runtime here) is not installed")
        self.version = self.ok("--version", timeout=30).strip()

    def prepare(self):
        from ketch.bench.rootfs import rootfs_tar
        tar = rootfs_tar(self.ws)
        self.ok("import", "--change", "ENV PATH=/bin", str(tar), self.image, timeout=120)

    def extra_flags(self):
        # The host's default nofile/nproc limits are above what runc may set here.
        return [*HOST_ULIMITS, "--cgroup-parent", "/" + self.ws.cgroup_parent]

    def storage_roots(self):
        return [self.ws.dir / "podman" / "root"]

    def remove(self, inst):
        # podman's `rm -f` first stops with the 10 s timeout, and a shell or sleep
        # as pid 1 ignores SIGTERM: every removal would wait it out. docker's and
        # ketch's `rm -f` kill at once; -t 0 makes podman's do the same.
        self.cmd("rm", "-f", "-t", "0", inst.id, timeout=60)


#: Docker's and podman's default ulimits are refused by runc on this kind of host.
HOST_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


class Docker(CliEngine):
    key = "docker"
    label = "docker"
    image = "ketch-bench-busybox:latest"
    run_flags = ["--network", "none"]

    def base(self):
        return ["docker"]

    def check(self):
        if not shutil.which("docker"):
            raise NotAvailable("docker is not installed")
        r = self.cmd("info", "--format", "{{.ServerVersion}}", timeout=30)
        if r.returncode != 0:
            raise NotAvailable(f"docker daemon not reachable: {one_line(r.stderr)}")
        self.version = r.stdout.strip()

    def prepare(self):
        from ketch.bench.rootfs import rootfs_tar
        self.ok("import", "--change", "ENV PATH=/bin", str(rootfs_tar(self.ws)), self.image,
                timeout=120)

    def extra_flags(self):
        return HOST_ULIMITS

    def forget(self):
        # The imported image lives in the daemon, outside the run's directory.
        self.cmd("rmi", "-f", self.image, timeout=60)

    def storage_roots(self):
        # Docker keeps its layers under its own data root; the figures are deltas of it.
        r = self.cmd("info", "--format", "{{.DockerRootDir}}", timeout=30)
        return [Path(r.stdout.strip() or "/var/lib/docker")]
