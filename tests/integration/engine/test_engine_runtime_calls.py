"""The engine's runtime calls: ketch-runc as a library in-process, or as a command.

With the default runtime, start/state/kill/delete/pause/resume run through
ketch.runtime in the engine's process (engine/ocicli.py); KETCH_OCI_RUNTIME
set to ketch-runc's absolute path selects its command line instead. Both
must behave the same, on the same state root.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ketch.engine import monitor
from tests.conftest import command, need_tool, until

TRAP = "trap 'exit 7' USR1; while :; do sleep 0.1; done"


def _state(ketch, name: str) -> dict:
    return json.loads(ketch("inspect", "-f", "{{json .State}}", name).stdout)


@pytest.mark.parametrize("path", ["library", "command"])
def test_lifecycle_is_the_same_in_process_and_through_the_command(ketch, busybox, ketch_env,
                                                                  path):
    runc = command("ketch-runc")
    if path == "command":
        ketch.env["KETCH_OCI_RUNTIME"] = runc
    root = os.path.join(ketch_env["KETCH_RUNROOT"], "runtime")
    assert ketch("run", "--rm", "--network", "none", busybox, "sh", "-c", "exit 3",
                 check=False).returncode == 3
    ketch("run", "-d", "--name", "trapper", "--network", "none", busybox, "sh", "-c", TRAP)
    try:
        # The command line sees what the engine made: one state root for both paths.
        listed = subprocess.run([runc, "--root", root, "list", "-q"], capture_output=True,
                                text=True, check=True).stdout.split()
        cid = ketch("inspect", "-f", "{{.Id}}", "trapper").stdout.strip()
        assert listed == [cid]
        # `pause` starts no ketch-runc process in library mode, one with the command line.
        need_tool("strace")
        trace = ketch.env["KETCH_ROOT"] + "/pause.trace"
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", trace, ketch.bin,
                        "pause", "trapper"], env=ketch.env, check=True, capture_output=True)
        with open(trace) as f:
            execs = [ln for ln in f if "execve(" in ln and '/ketch-runc", [' in ln]
        assert len(execs) == (0 if path == "library" else 1), execs
        assert _state(ketch, "trapper")["Status"] == "paused"
        ketch("unpause", "trapper")
        assert _state(ketch, "trapper")["Status"] == "running"
        ketch("kill", "-s", "USR1", "trapper")
        st = until(lambda: (s := _state(ketch, "trapper"))["Status"] == "exited" and s)
        assert st["ExitCode"] == 7 and not st["OOMKilled"]
        bad = ketch("kill", "trapper", check=False)
        assert bad.returncode != 0 and "is not running" in bad.stderr
    finally:
        ketch("rm", "-f", "trapper")
    # A running container removed with -f: its delete kills (through the command line
    # even in library mode, so the engine never reaps another's children).
    ketch("run", "-d", "--name", "live", "--network", "none", busybox, "sleep", "300")
    ketch("rm", "-f", "live")
    assert ketch("ps", "-aq").stdout.strip() == ""
    assert not os.path.isdir(root) or os.listdir(root) == []


def test_a_foreground_run_starts_no_runtime_command_and_no_cleanup_interpreter(ketch,
                                                                               busybox):
    """`run --rm` with ketch-runc: create runs in a forked child that then becomes the
    monitor, start and delete run in-process; the only interpreters started are the
    CLI and init's stage 1 (from its read-only view, /proc/self/fd/N); the monitor
    sees the CLI's lock and starts no cleanup command."""
    need_tool("strace")
    trace = ketch.env["KETCH_ROOT"] + "/run.trace"
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", trace, ketch.bin,
                           "run", "--rm", "--network", "none", busybox, "sh", "-c", "exit 5"],
                          env=ketch.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5, proc.stderr
    with open(trace) as f:
        execs = [ln.split('execve("', 1)[1].split('"', 1)[0] for ln in f
                 if 'execve("' in ln and ") = 0" in ln]
    assert [p for p in execs if p.endswith("/ketch-runc")] == []
    assert [p for p in execs if p.endswith("/ketch")] == [ketch.bin]   # the CLI only
    assert [p for p in execs if p.endswith("/ketch-monitor")] == [monitor.monitor_binary()]
    assert len([p for p in execs if p.startswith("/proc/self/fd/")]) == 1   # stage 1
    assert ketch("ps", "-aq").stdout == ""   # and the CLI did clean up (--rm)
