"""The monitor outlives the CLI; restart policies; a simulated reboot and `system restore`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import until


def _state(ketch, name: str) -> dict:
    return json.loads(ketch("inspect", "-f", "{{json .State}}", name).stdout) | {
        "RestartCount": int(ketch("inspect", "-f", "{{.RestartCount}}", name).stdout)}


def test_on_failure_restarts_up_to_the_maximum(ketch, busybox):
    ketch("run", "-d", "--name", "flaky", "--network", "none", "--restart", "on-failure:2",
          busybox, "sh", "-c", "exit 3")
    try:
        st = until(lambda: (s := _state(ketch, "flaky"))["Status"] == "exited"
                    and s["RestartCount"] == 2 and s)
        assert st["ExitCode"] == 3
        time.sleep(1)   # no third attempt
        assert _state(ketch, "flaky")["RestartCount"] == 2
    finally:
        ketch("rm", "-f", "flaky")


def test_stop_cancels_restart_always(ketch, busybox):
    ketch("run", "-d", "--name", "loop", "--network", "none", "--restart", "always",
          busybox, "sh", "-c", "sleep 0.2")
    try:
        until(lambda: _state(ketch, "loop")["RestartCount"] >= 1)
        ketch("stop", "-t", "1", "loop")
        time.sleep(1.5)
        st = _state(ketch, "loop")
        assert st["Status"] == "exited" and not st["Running"]
    finally:
        ketch("rm", "-f", "loop")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_cgroups(parent: str, ids) -> None:
    base = Path("/sys/fs/cgroup")
    for hier in [base, *base.iterdir()]:
        for cid in ids:
            d = hier / parent / cid
            if d.is_dir():
                until(lambda d=d: _rmdir(d), timeout=10)


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()
        return True
    except OSError:
        return False


def test_simulated_reboot_then_restore(ketch, busybox, ketch_env):
    keep = ketch("run", "-d", "--name", "keep", "--network", "none", "--restart", "always",
                 busybox, "sleep", "300").stdout.strip()
    gone = ketch("run", "-d", "--name", "gone", "--network", "none", busybox,
                 "sleep", "300").stdout.strip()
    run, root = Path(ketch_env["KETCH_RUNROOT"]), Path(ketch_env["KETCH_ROOT"])
    try:
        # "Power off": monitors first (so no exit command runs), then the containers.
        pids = [int(_state(ketch, c)["Pid"]) for c in (keep, gone)]
        for c in (keep, gone):
            _kill(int((run / "containers" / c / "monitor.pid").read_text()))
        for pid in pids:
            _kill(pid)
        until(lambda: not any(os.path.exists(f"/proc/{p}") and
                               "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]
                               for p in pids), timeout=20)
        for c in (keep, gone):
            subprocess.run(["umount", "-l", str(root / "containers" / c / "rootfs")],
                           check=False)
        subprocess.run(["rm", "-rf", str(run)], check=True)
        _remove_cgroups(ketch_env["KETCH_CGROUP_PARENT"], (keep, gone))   # a reboot does
        # The database still says "running"; ps must tell the truth.
        ps = ketch("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.split("\n")
        assert sorted(filter(None, ps)) == ["gone exited", "keep exited"]
        assert ketch("ps", "-q").stdout == ""
        restored = ketch("system", "restore").stdout.split()
        assert restored == [keep]
        assert _state(ketch, "keep")["Running"] is True
        assert _state(ketch, "gone")["Running"] is False
        assert ketch("exec", "keep", "echo", "alive").stdout == "alive\n"
    finally:
        ketch("rm", "-f", "keep", "gone")


def test_healthcheck_goes_from_starting_to_healthy(ketch, busybox, ketch_env):
    ketch("run", "-d", "--name", "doc", "--network", "none", "--health-cmd", "test -e /ok",
          "--health-interval", "300ms", "--health-retries", "1", busybox, "sleep", "60")
    try:
        health = lambda: ketch("inspect", "-f", "{{.State.Health.Status}}", "doc").stdout.strip()  # noqa: E731
        assert until(lambda: health() == "unhealthy")
        ketch("exec", "doc", "touch", "/ok")
        until(lambda: health() == "healthy")
        assert "(healthy)" in ketch("ps", "--format", "{{.Status}}").stdout
        # A second healthchecked container is served by the same checker process.
        ketch("run", "-d", "--name", "doc2", "--network", "none", "--health-cmd", "true",
              "--health-interval", "300ms", busybox, "sleep", "60")
        until(lambda: ketch("inspect", "-f", "{{.State.Health.Status}}", "doc2").stdout
               .strip() == "healthy")
        assert len(_checkers(ketch_env["KETCH_TEST_ID"])) == 1
    finally:
        ketch("rm", "-f", "doc", "doc2", check=False)


def _checkers(test_id: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"healthcheck-loop" in cmd and f"KETCH_TEST_ID={test_id}".encode() in env:
            found.append(int(pid))
    return found
