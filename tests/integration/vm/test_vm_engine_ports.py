"""A micro-VM started by the engine on its bridge: published ports reach the
guest through the bridge's DNAT, and QEMU never listens on the host's own
network namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from ketch.bench.workloads import free_port
from tests.conftest import command
from tests.integration.vm.conftest import need_vm, vm_processes


def _host_listeners(port: int) -> list[str]:
    """Lines of /proc/net/tcp (this, the host's, namespace) listening on `port`."""
    out = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                out.append(line.strip())
    return out


def test_vm_published_port_goes_through_the_bridge(tmp_path: Path, ketch_env):
    need_vm()
    ketch = command("ketch")
    env = dict(os.environ)
    # virtiofsd's socket lives in the runtime's state dir; a unix socket path
    # must fit in 108 bytes, which pytest's long tmp_path names do not.
    runroot = Path(f"/run/kt-{env['KETCH_TEST_ID']}")
    env["KETCH_RUNROOT"] = str(runroot)

    def run(*args, check=True, timeout=120):
        r = subprocess.run([ketch, *args], capture_output=True, env=env, timeout=timeout)
        if check:
            assert r.returncode == 0, r.stderr.decode()
        return r

    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("served by the micro-VM\n")
    # A guest port nobody on the host uses, to tell a host-side listener apart.
    guest_port = free_port()
    host_port = free_port()
    run("bootstrap", "busybox", "-q")
    run("run", "-d", "--name", "vmweb", "--runtime", "vm",
        "-p", f"127.0.0.1:{host_port}:{guest_port}", "-v", f"{www}:/www",
        "busybox", "httpd", "-f", "-p", str(guest_port), "-h", "/www")
    try:
        body, deadline = None, time.monotonic() + 90
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/", timeout=3) as r:
                    body = r.read()
            except OSError:
                time.sleep(0.5)
        assert body == b"served by the micro-VM\n"
        # QEMU's forward lives in the container's namespace, not the host's.
        assert _host_listeners(guest_port) == []
    finally:
        run("rm", "-f", "vmweb", check=False)
        shutil.rmtree(runroot, ignore_errors=True)
    assert vm_processes(str(tmp_path)) == []
    assert vm_processes(str(runroot)) == []
