"""`ketch info`, `system df`, `system check`, `version`, and network reconcile after a crash."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest


def test_info_shows_snapshotter_and_micro_vm_verdict_without_probing(ketch, busybox, tmp_path):
    cache = tmp_path / "vmcache"
    (cache / "kernel" / "test-rel").mkdir(parents=True)
    (cache / "kernel" / "current").write_text("test-rel\n")
    vmlinux = cache / "kernel" / "test-rel" / "vmlinux"
    vmlinux.write_bytes(b"")   # never booted: info must not probe
    ketch.env.update(KETCH_VM_CACHE=str(cache), KETCH_VM_ACCEL="auto")
    doc = json.loads(ketch("info", "--format", "{{json .}}").stdout)
    assert doc["Driver"] in ("overlay", "copy")
    assert doc["MicroVM"]["Accelerator"] == "not probed yet"
    assert doc["MicroVM"]["Kernel"] == "test-rel"
    verdicts = json.loads((cache / "accel.json").read_text()) if (cache / "accel.json").exists() \
        else {}
    assert all("|" not in key for key in verdicts), f"info probed: {verdicts}"
    qemu = doc["MicroVM"]["Qemu"]
    (cache / "accel.json").write_text(json.dumps({
        **verdicts, f"test-rel|{vmlinux}|{qemu}": {"accel": "tcg", "reason": "probe said so"}}))
    text = ketch("info").stdout
    assert f"Storage Driver: {doc['Driver']}\n" in text
    assert "Micro-VM Accelerator: tcg (probe said so)\n" in text + "\n"


def test_version_names_client_and_server(ketch):
    from ketch import __version__
    doc = json.loads(ketch("version", "--format", "{{json .}}").stdout)
    assert doc["Client"]["Version"] == doc["Server"]["Version"] == __version__
    text = ketch("version").stdout
    assert text.startswith("Client:\n") and "\nServer: " in text and __version__ in text


def test_system_df_counts_images_containers_volumes(ketch, busybox):
    ketch("volume", "create", "dfvol")
    ketch("create", "--name", "dfc", "--network", "none", busybox, "true")
    try:
        lines = ketch("system", "df").stdout.splitlines()
        assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
        rows = {ln.split("  ")[0]: ln.split() for ln in lines[1:]}
        assert rows["Images"][1:3] == ["1", "1"]         # busybox, used by dfc
        assert rows["Containers"][1:3] == ["1", "0"]     # created, not running
        assert rows["Local Volumes"][2:4] == ["1", "0"]
    finally:
        ketch("rm", "dfc")
        ketch("volume", "rm", "dfvol")


def test_system_check_reports_a_missing_bundle(ketch, busybox, ketch_env):
    assert ketch("system", "check").stdout == "ok\n"
    cid = ketch("create", "--network", "none", busybox, "true").stdout.strip()
    try:
        bundle = Path(ketch_env["KETCH_ROOT"]) / "containers" / cid
        hidden = bundle.with_name(cid + ".hidden")
        bundle.rename(hidden)
        try:
            bad = ketch("system", "check", check=False)
        finally:
            hidden.rename(bundle)
        assert bad.returncode == 1
        assert f"container {cid[:12]}: bundle directory is missing" in bad.stdout
    finally:
        ketch("rm", cid)


def _crash(ketch, ketch_env, cid: str) -> None:
    """What kill -9 of every ketch process does: the monitor, then the container, die."""
    run = Path(ketch_env["KETCH_RUNROOT"])
    mon = int((run / "containers" / cid / "monitor.pid").read_text())
    pid = int(ketch("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    os.kill(mon, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("command", [["ps", "-a"], ["system", "prune", "-f"],
                                     ["run", "--rm", "--network", "none", "busybox", "true"]])
def test_network_leftovers_of_a_crash_are_reconciled(ketch, busybox, ketch_env, command):
    from ketch.network import host
    bridge, table = host.default_bridge_name(), host.table_name()
    cid = ketch("run", "-d", "-p", "18089:80", busybox, "sleep", "60").stdout.strip()
    try:
        _crash(ketch, ketch_env, cid)
        db = Path(ketch_env["KETCH_ROOT"]) / "ketch.db"
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM sandboxes").fetchone()[0] == 1
        assert os.path.isdir(f"/sys/class/net/{bridge}")   # the crash left the bridge
        ketch(*command)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM sandboxes").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM endpoints").fetchone()[0] == 0
        assert not os.path.isdir(f"/sys/class/net/{bridge}")
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert f" {table}\n" not in tables + "\n"
    finally:
        ketch("rm", "-f", cid, check=False)
