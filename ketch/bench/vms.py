"""The full-VM adapter: `ketch vm create/start/stop/rm`, a whole guest per instance.

A full VM is the "VM" of the classic comparison: its own disk image and a
complete boot, as opposed to the micro-VM that boots straight into the
container's process. It is driven through `ketch vm`, like the other
adapters drive their command lines; what the command line does not offer is
reported as not available, with the reason.
"""

from __future__ import annotations

import time

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
    run_flags: list[str] = []
    # `ketch vm create` has no volumes: the guest writes to its own disk only.
    io_targets = {"VM disk": "/"}
    start_timeout = 300.0
    start_verb = "`vm create -p` + `vm start`"
    # The guest OS's init leaves eth0 down; QEMU's user network gives 10.0.2.15.
    http_prefix = "ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0; "
    #: Why a quick run leaves it out unless named (each start builds a disk and boots an OS).
    QUICK_SKIP = ("skipped in --quick: each full-VM start builds a disk and boots an OS "
                  "(~5 s each under TCG here, ~40 s for its rows); use --full or --runtimes fullvm")

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

    def volume_flags(self, volume):
        return []

    def run_fg(self, cmd, *, timeout, volume=None) -> Timed:
        """`vm create` (builds the disk) then `vm start --attach`: one full run.

        Times are counted from the start of `create`, as `run` counts its own
        create; the create part is kept in Timed.stderr's first line for the how.
        """
        name = self.ws.name()
        t0 = time.monotonic()
        try:
            self.ok("vm", "create", "--name", name, self.image, *cmd, timeout=timeout)
            created = time.monotonic() - t0
            t = run_timed([*self.base(), "vm", "start", "--attach", name], env=self.env,
                          timeout=timeout)
        finally:
            self.remove(Instance(name=name, id=name))
        self.create_seconds.append(created)
        shift = lambda v: None if v is None else v + created  # noqa: E731
        return Timed(shift(t.first_output), shift(t.exited), t.returncode, t.stdout,
                     t.stderr, [(at + created, line) for at, line in t.line_times])

    def start(self, cmd, *, http_port=None, volume=None):
        name = self.ws.name()
        pub = ["-p", f"127.0.0.1:{http_port}:{http_port}"] if http_port else []
        self.ok("vm", "create", "--name", name, *pub, self.image, *cmd,
                timeout=self.start_timeout)
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
