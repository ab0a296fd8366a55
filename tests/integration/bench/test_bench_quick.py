"""`ketch bench --quick --json` end to end, on the real runtimes of this host.

Every runtime is listed, every row has a value or says why not, the basic
relations hold where both sides were measured, and nothing the run started
remains afterwards. Timing is never asserted against a threshold; only
relations between runtimes measured in the same run (a container starts
before a micro-VM) and properties that do not depend on speed (an app that
touches 100 MB costs more than 100 MB of PSS) are.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ketch.bench.results import METRICS
from tests.conftest import command

ALL = ["container", "microvm", "fullvm", "runc", "podman", "docker"]
_CACHE: dict[str, dict] = {}


def bench(env: dict[str, str], *args: str, timeout: float = 240) -> dict:
    r = subprocess.run([command("ketch"), "bench", "--quick", "--json", "-q", *args],
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["cleanup"]["clean"], data["cleanup"]
    return data


def no_process_of(data: dict) -> None:
    """No process of the run remains: QEMU, shims, monitors name the run's token or dir."""
    token = f"kb-{Path(data['options']['workdir']).name}"
    workdir = data["options"]["workdir"]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        assert token not in cmd and workdir not in cmd, f"left running: {entry} {cmd}"
    assert not Path(workdir).exists()
    assert not Path(f"/run/{token}").exists()


def start_and_workload(env: dict[str, str]) -> dict:
    if "start" not in _CACHE:
        # No --runtimes: the default set, where a quick run lists the full VM as skipped.
        _CACHE["start"] = bench(env, "-n", "1", "--only", "start,workload")
        no_process_of(_CACHE["start"])
    return _CACHE["start"]


def results(data: dict, runtime: str, metric: str) -> list[dict]:
    return [r for r in data["results"] if r["runtime"] == runtime and r["metric"] == metric]


@pytest.mark.timeout(300)
def test_every_runtime_listed_and_every_row_has_a_value_or_a_reason(ketch_env):
    data = start_and_workload(ketch_env)
    assert [r["key"] for r in data["runtimes"]] == ALL
    for info in data["runtimes"]:
        assert info["available"] or info["reason"], info
        if info["key"] == "fullvm":
            assert not info["available"] and info["reason"].startswith("skipped in --quick")
        if info["kind"] == "vm" and info["available"]:
            assert info["accel"], info
    for key in ALL:
        for metric in METRICS:
            rows = results(data, key, metric)
            assert rows, f"no row for {key} {metric}"
            for r in rows:
                assert (r["value"] is not None) != bool(r["reason"]), r
                if r["value"] is not None:
                    assert r["how"] and r["samples"], r
                    assert r["summary"]["median"] == pytest.approx(r["value"])


@pytest.mark.timeout(300)
def test_container_starts_before_micro_vm_and_cpu_is_a_ratio(ketch_env):
    data = start_and_workload(ketch_env)
    avail = {r["key"]: r for r in data["runtimes"]}
    start = {k: results(data, k, "start_trivial")[0] for k in ALL}
    measured = [k for k in ALL if start[k]["value"] is not None]
    for k in measured:
        cpu = results(data, k, "cpu")[0]
        if cpu["value"] is not None:
            assert cpu["value"] > 0 and len(cpu["extra"]["native_seconds"]) >= 1
    if start["microvm"]["value"] is None:
        pytest.skip(f"micro-VM not measured: {start['microvm']['reason']}")
    containers = [k for k in ("container", "runc", "podman", "docker")
                  if start[k]["value"] is not None]
    if not containers:
        pytest.skip("no container runtime measured: "
                    + "; ".join(f"{k}: {avail[k]['reason']}" for k in ("container", "runc")))
    for k in containers:
        assert start[k]["value"] < start["microvm"]["value"], (k, start[k], start["microvm"])


@pytest.mark.timeout(200)
def test_memory_storage_and_out_dir(ketch_env, tmp_path):
    out = tmp_path / "report"
    data = bench(ketch_env, "--runtimes", "container,runc", "-n", "1", "--only", "memory",
                 "--out", str(out))
    no_process_of(data)
    measured = [r["key"] for r in data["runtimes"] if r["available"]]
    if not measured:
        pytest.skip("; ".join(f"{r['label']}: {r['reason']}" for r in data["runtimes"]))
    for k in measured:
        idle = results(data, k, "mem_idle")[0]
        app = results(data, k, "mem_100m")[0]
        if idle["value"] is None or app["value"] is None:
            continue
        # awk really wrote a 100,000,000-byte string: its PSS must show it.
        assert app["value"] > 100_000_000 > idle["value"]
        s1, s3 = results(data, k, "storage_1")[0], results(data, k, "storage_3")[0]
        assert 0 < s1["value"] <= s3["value"]
        dens = results(data, k, "density")[0]
        assert dens["extra"]["extrapolated"] and "EXTRAPOLATED" in dens["how"]
    assert json.loads((out / "report.json").read_text())["results"] == data["results"]
    md = (out / "report.md").read_text()
    assert "| claim | container | VM |" in md
    for png in ("memory.png", "storage.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "start-time.png").exists()  # not measured, so not drawn
