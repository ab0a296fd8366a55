"""Micro-VMs restored from a snapshot of a booted guest (TCG): each run still
gets its own files, limits, clock and randomness, and a snapshot QEMU cannot
load falls back to a boot that saves a good one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.integration.vm.conftest import make_bundle

# A shape (2 vCPUs where the host has them, 256 MiB + the guest's share) used
# only here, so no other test races for its snapshot.
SCRIPT = ("grep -q slow /etc/extra.conf && sleep 2; cat /etc/extra.conf; "
          "touch /newfile 2>/dev/null && echo root-rw || echo root-ro; "
          "echo scratch > /scratch/x && cat /scratch/x; hostname; "
          "echo $(nproc) $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2); "
          "date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo")


def _bundle(tmp_path: Path) -> tuple[Path, Path]:
    extra = tmp_path / "extra.conf"
    bundle = make_bundle(
        tmp_path, ["sh", "-c", SCRIPT], root={"path": "rootfs", "readonly": True},
        mounts=[{"destination": "/etc/extra.conf", "type": "bind", "source": str(extra),
                 "options": ["rbind", "ro"]},
                {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"}],
        linux={"resources": {"memory": {"limit": 256 << 20},
                             "cpu": {"quota": 150000, "period": 100000}}})
    return bundle, extra


def _need_tcg(launch: dict) -> None:
    if launch["accel"] != "tcg":
        pytest.skip("micro-VM snapshots are used under TCG only; this host runs KVM")


def _run(runv, bundle: Path, cid: str) -> tuple[list[str], dict, dict]:
    """Run to completion, keeping the state dir for its boot marks and launch plan."""
    r = runv("run", "--keep", "--bundle", str(bundle), cid)
    d = runv.root / cid
    try:
        assert r.returncode == 0, r.stderr
        marks = dict(kv.split("=") for kv in (d / "boot.times").read_text().split())
        launch = json.loads((d / "launch.json").read_text())
    finally:
        runv("delete", "--force", cid)
    return r.stdout.decode().splitlines(), marks, launch


def test_vm_restored_runs_get_their_own_config_clock_and_randomness(runv, tmp_path: Path):
    bundle, extra = _bundle(tmp_path)
    extra.write_text("slow first run\n")
    out, marks, launch = _run(runv, bundle, "s1")
    _need_tcg(launch)
    assert launch["snapshot"] is not None and "config" in marks
    state = Path(launch["snapshot"]["state"])
    assert state.exists()                  # saved by this run, or an earlier one
    assert out[:4] == ["slow first run", "root-ro", "scratch", "vmtest"]

    extra.write_text("second\n")           # file binds are read per run, not from the snapshot
    runs = []
    for cid in ("s2", "s3"):
        started = time.time()
        out, marks, _ = _run(runv, bundle, cid)
        runs.append((started, out, marks))
    for started, out, _marks in runs:
        assert out[:4] == ["second", "root-ro", "scratch", "vmtest"], out
        cpus, mem_kib = (int(x) for x in out[4].split())
        assert cpus == min(2, os.cpu_count())
        assert 256 * 1024 < mem_kib <= (256 + 64) * 1024
        # The snapshot's clock is at least 2 s (the first run's sleep) behind:
        # the guest's own clock must have been set to the host's.
        assert started - 1 <= int(out[5]) <= time.time() + 1, (started, out[5])
    # Both restored from one snapshot (same boot marks up to it), yet their
    # random streams differ: the CRNG was reseeded after each restore.
    (_, out2, marks2), (_, out3, marks3) = runs
    assert (marks2["init"], marks2["modules"]) == (marks3["init"], marks3["modules"])
    assert len(out2[6]) == 32 and out2[6] != out3[6]


def test_vm_unloadable_snapshot_falls_back_to_a_boot(runv, tmp_path: Path):
    bundle, extra = _bundle(tmp_path)
    extra.write_text("fallback\n")
    _out, _marks, launch = _run(runv, bundle, "f1")
    _need_tcg(launch)
    state = Path(launch["snapshot"]["state"])
    garbage = state.with_name(f".garbage.{os.getpid()}")
    garbage.write_bytes(b"not a QEMU migration stream\n" * 100)
    os.replace(garbage, state)
    out, marks, _ = _run(runv, bundle, "f2")
    assert out[:4] == ["fallback", "root-ro", "scratch", "vmtest"]
    # The fallback boot saved a snapshot QEMU can load in place of the bad one.
    assert state.stat().st_size > 1 << 20
    with open(state, "rb") as f:
        assert not f.read(64).startswith(b"not a QEMU")
