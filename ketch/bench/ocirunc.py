"""The reference OCI runtime: the host's `runc`, given bundles built here.

This is the floor for a container start on this machine: no image store, no
writable layer, no monitor, just runc and a read-only busybox rootfs. Every
instance gets its own bundle directory (config.json only); the rootfs is one
shared directory, which is also why runc has no "writable layer" I/O figure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from ketch.bench.rootfs import rootfs_dir
from ketch.bench.runtimes import Instance, NotAvailable, Runtime
from ketch.bench.workloads import one_line, run_timed


class Runc(Runtime):
    key = "runc"
    label = "runc"
    io_targets = {"volume": "/vol"}
    start_verb = "`runc run --detach` (no network namespace)"

    def state_root(self) -> Path:
        return self.ws.dir / "runc-state"

    def base(self) -> list[str]:
        return [shutil.which("runc") or "runc", "--root", str(self.state_root())]

    def check(self):
        if not shutil.which("runc"):
            raise NotAvailable("runc is not installed")
        r = subprocess.run(["runc", "--version"], capture_output=True, text=True, timeout=30)
        self.version = r.stdout.splitlines()[0] if r.stdout else ""

    def prepare(self):
        rootfs_dir(self.ws)

    def bundle(self, name: str, cmd: list[str], *, host_net: bool = False,
               volume: Path | None = None) -> Path:
        """<ws>/bundles/<name>/config.json pointing at the shared rootfs."""
        spec = _spec_via_file(self.ws.dir)
        spec["process"]["terminal"] = False
        spec["process"]["args"] = cmd
        spec["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
            {"type": "RLIMIT_NPROC", "hard": 4096, "soft": 4096}]
        spec["root"] = {"path": str(rootfs_dir(self.ws)), "readonly": True}
        spec["hostname"] = name
        # The rootfs is shared and read-only; /tmp is each instance's own tmpfs.
        spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "nodev", "mode=1777", "size=64m"]})
        spec["linux"]["cgroupsPath"] = f"/{self.ws.cgroup_parent}/{name}"
        if host_net:
            spec["linux"]["namespaces"] = [
                n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
        if volume is not None:
            spec["mounts"].append({"destination": "/vol", "type": "bind",
                                   "source": str(volume), "options": ["rbind", "rw"]})
        d = self.ws.dir / "bundles" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(spec, indent=1))
        return d

    def run_fg(self, cmd, *, timeout, volume=None):
        name = self.ws.name()
        b = self.bundle(name, cmd, volume=volume)
        # `runc run` in the foreground deletes the container when it exits.
        t = run_timed([*self.base(), "run", "--bundle", str(b), name], env=self.env,
                      timeout=timeout)
        self.remove(Instance(name=name, id=name))
        return t

    def start(self, cmd, *, http_port=None, volume=None):
        name = self.ws.name()
        b = self.bundle(name, cmd, host_net=http_port is not None, volume=volume)
        log = b / "output.log"
        with open(log, "wb") as out:
            r = subprocess.run([*self.base(), "run", "--detach", "--bundle", str(b), name],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                               env=self.env, timeout=self.start_timeout)
        if r.returncode != 0:
            self.remove(Instance(name=name, id=name))
            raise NotAvailable(f"runc run --detach failed: {one_line(log.read_text())}")
        return Instance(name=name, id=name, extra={"log": str(log)})

    def logs(self, inst):
        try:
            return Path(inst.extra.get("log", "")).read_text()
        except OSError:
            return ""

    def remove(self, inst):
        subprocess.run([*self.base(), "delete", "--force", inst.id], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)

    def leftovers(self) -> list[str]:
        r = subprocess.run([*self.base(), "list", "-q"], capture_output=True, text=True,
                           timeout=30)
        return r.stdout.split()

    def storage_roots(self):
        return [self.ws.dir / "rootfs", self.ws.dir / "bundles"]


def _spec_via_file(workdir: Path) -> dict:
    """`runc spec` writes config.json into a directory; read it from a scratch one."""
    scratch = workdir / "spec-template"
    scratch.mkdir(parents=True, exist_ok=True)
    cfg = scratch / "config.json"
    if not cfg.exists():
        subprocess.run(["runc", "spec", "--bundle", str(scratch)], check=True,
                       capture_output=True, timeout=30)
    return json.loads(cfg.read_text())
