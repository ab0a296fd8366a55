"""The full-VM adapter: `ketch vm create/start/stop/rm`, a whole guest per instance.

A full VM is the "VM" of the classic comparison: its own disk image and a
complete boot, as opposed to the micro-VM that boots straight into the
container's process. It is driven through `ketch vm`, like the other
adapters drive their command lines; what the command line does not offer is
reported as not available, with the reason.
"""

from __future__ import annotations

from pathlib import Path

from ketch.bench.runtimes import (
    Instance,
    KetchContainer,
    NotAvailable,
    vm_accel,
)
from ketch.bench.workloads import Timed, one_line, run_timed


class KetchFullVM(KetchContainer):
    key = "fullvm"
    label = "ketch full VM"
    kind = "vm"
    io_targets = {"VM disk": "/"}
    start_timeout = 300.0

    def check(self):
        super().check()
        r = self.cmd("vm", "--help", timeout=30)
        if r.returncode != 0:
            raise NotAvailable(f"`ketch vm` is not available: {one_line(r.stderr or r.stdout)}")
        missing = [verb for verb in ("create", "start", "rm") if verb not in r.stdout]
        if missing:
            raise NotAvailable(f"`ketch vm` has no {', '.join(missing)} subcommand yet")

    def accel(self):
        return vm_accel()

    def http_bind(self):
        return "0.0.0.0", True

    def run_fg(self, cmd, *, timeout, volume=None) -> Timed:
        """create + start --attach: a full boot, then the command, then removal."""
        name = self.ws.name()
        try:
            self.ok("vm", "create", "--name", name, *self.volume_flags(volume), self.image,
                    *cmd, timeout=timeout)
            return run_timed([*self.base(), "vm", "start", "--attach", name],
                             env=self.env, timeout=timeout)
        finally:
            self.remove(Instance(name=name, id=name))

    def start(self, cmd, *, http_port=None, volume=None):
        name = self.ws.name()
        pub = ["-p", f"127.0.0.1:{http_port}:{http_port}"] if http_port else []
        self.ok("vm", "create", "--name", name, *pub, *self.volume_flags(volume), self.image,
                *cmd, timeout=self.start_timeout)
        inst = Instance(name=name, id=name)
        try:
            self.ok("vm", "start", name, timeout=self.start_timeout)
        except NotAvailable:
            self.remove(inst)
            raise
        return inst

    def logs(self, inst):
        r = self.cmd("vm", "logs", inst.id, timeout=30)
        return r.stdout + r.stderr

    def remove(self, inst):
        self.cmd("vm", "rm", "-f", inst.id, timeout=120)

    def leftovers(self):
        r = self.cmd("vm", "ls", "-a", "--format", "{{.Name}}", timeout=30)
        return [n for n in r.stdout.split() if n.startswith(f"kb-{self.ws.run_id}")]

    def storage_roots(self):
        return [Path(self.env["KETCH_ROOT"]), Path(self.env["KETCH_RUNROOT"])]
