"""The report builder on a recorded run: table cells checked against hand-made figures."""

from __future__ import annotations

import json

from ketch.bench import report
from ketch.bench.results import METRICS, Result, Run, RuntimeInfo, from_samples, missing

FULLVM_REASON = "`ketch vm` has no create subcommand yet"


def recorded_run(with_ketch: bool = True) -> Run:
    run = Run(host={"kernel": "6.1.0", "cpus": 2, "mem_total": 24 * 2**30,
                    "busybox": "/bin/busybox", "busybox_sha256": "ab" * 32},
              options={"mode": "quick", "runs": 5}, seconds=61.0)
    run.runtimes = [
        RuntimeInfo("container", "ketch container", "container", with_ketch,
                    None if with_ketch else "`ketch run` is not available: boom"),
        RuntimeInfo("podman", "podman", "container", True, version="podman version 4.3.1"),
        RuntimeInfo("microvm", "ketch micro-VM", "vm", True,
                    accel="TCG (QEMU failed under KVM: MSR)"),
        RuntimeInfo("fullvm", "ketch full VM", "vm", False, FULLVM_REASON),
    ]
    R = run.results
    if with_ketch:
        R.append(from_samples("container", "start_trivial", [0.30, 0.10, 0.20, 0.40, 0.50], "x"))
        R.append(Result("container", "storage_1", 3428352.0, "bytes", "y",
                        extra={"apparent": 3500000, "sparse": False}))
        R.append(from_samples("container", "cpu", [97.0, 99.0, 98.0], "z"))
        R.append(missing("container", "mem_100m", "runs failed: out of memory"))
        R.append(Result("container", "io_write", 140.0, "MB/s", "w", target="writable layer"))
    R.append(from_samples("podman", "start_trivial", [0.5, 0.52, 0.54], "p"))
    R.append(from_samples("microvm", "start_trivial", [2.0, 2.2, 2.1], "m"))
    R.append(Result("microvm", "storage_1", 40 * 2**20, "bytes", "m",
                    extra={"apparent": 2 * 2**30, "sparse": True}))
    R.append(Result("microvm", "io_write", 150.0, "MB/s", "w", target="VM disk (rootfs)"))
    R.append(Result("microvm", "density", 812.0, "instances", "e"))
    for metric in METRICS:
        R.append(missing("fullvm", metric, f"not available: {FULLVM_REASON}"))
    return run


def rows_by_title(run: Run) -> dict[str, tuple[str, str]]:
    return {t: (c, v) for t, c, v in report.claims_rows(run)}


def test_start_time_cells():
    rows = rows_by_title(recorded_run())
    container, vm = rows["Start time"]
    # median 0.3, p90 0.46; IQR 0.2 / 0.3 > 0.3 -> flagged
    assert container == "claimed seconds -> ketch: 300 ms (p90 460 ms, n=5) (wide spread)"
    # micro-VM: median 2.1, p90 at 1.8 -> 2.1 + 0.8*0.1 = 2.18; tight -> not flagged
    assert vm == ("claimed minutes -> micro-VM [TCG]: 2.10 s (p90 2.18 s, n=3); "
                  "full VM: n/a: not available (see below)")


def test_storage_cpu_and_missing_cells():
    rows = rows_by_title(recorded_run())
    assert rows["Size on disk (image + 1 instance)"] == (
        "claimed MBs -> ketch: 3.43 MB",
        "claimed GBs -> micro-VM [TCG]: 41.9 MB (apparent 2.15 GB: sparse); "
        "full VM: n/a: not available (see below)")
    # 97 98 99: median 98, p90 98.8 -> "99%"
    assert rows["CPU throughput, % of native"][0] == \
        "claimed 95-100% -> ketch: 98% (p90 99%, n=3)"
    assert rows["Memory of a 100 MB app"][0] == \
        "claimed ~110 MB -> ketch: n/a: runs failed: out of memory"
    # a metric nobody recorded is "not run", never blank
    assert rows["Three instances on disk"][0] == "claimed ~530 MB -> ketch: n/a: not run"
    assert rows["Idle instances in the budget (extrapolated)"][1].startswith(
        "micro-VM [TCG]: 812 (extrapolated)")


def test_container_column_falls_back_to_the_next_runtime():
    run = recorded_run(with_ketch=False)
    assert report.pick_container(run) == "podman"
    container, _ = rows_by_title(run)["Start time"]
    assert container == "claimed seconds -> podman: 520 ms (p90 536 ms, n=3)"
    assert "ketch container: not available: `ketch run` is not available: boom" \
        in report.render_text(run)


def test_every_cell_has_a_value_or_a_reason():
    for row in report.claims_rows(recorded_run()):
        for cell in row[1:]:
            assert cell.strip() and "None" not in cell


def test_detail_table_lists_io_targets_and_all_runtimes():
    header, rows = report.detail_rows(recorded_run())
    assert header == ["measurement", "ketch", "podman", "micro-VM [TCG]", "full VM"]
    io_row = next(r for r in rows if r[0].endswith("[VM disk (rootfs)]"))
    assert io_row[3] == "150 MB/s"
    assert io_row[1] == "-"  # ketch has no such target: a dash, not a fake n/a
    layer_row = next(r for r in rows if r[0].endswith("[writable layer]"))
    assert layer_row[1] == "140 MB/s"
    assert layer_row[2] == "n/a: not run"  # podman recorded no I/O at all


def test_memavailable_row_is_beside_pss():
    run = recorded_run()
    run.results.append(from_samples("podman", "mem_idle", [1e6, 1.1e6, 0.9e6], "p",
                                    memavailable_drop_per_instance=-4e6))
    header, rows = report.detail_rows(run)
    names = [r[0] for r in rows]
    i = names.index("host memory per idle instance (PSS)")
    assert names[i + 1].startswith("host MemAvailable drop")
    assert rows[i][2] == "1 MB"
    assert rows[i + 1][2] == "-4 MB (host noise exceeded it)"
    assert rows[i + 1][1] == "n/a: see PSS row"


def test_accel_word():
    assert report.accel_word("TCG (QEMU failed under KVM)") == "TCG"
    assert report.accel_word("KVM") == "KVM"
    assert report.accel_word(None) == "accel unknown"
    assert report.accel_word("not probed yet") == "accel unknown"


def test_json_round_trip_gives_the_same_tables():
    run = recorded_run()
    again = Run.from_dict(json.loads(json.dumps(run.to_dict())))
    assert report.claims_rows(again) == report.claims_rows(run)
    first = run.to_dict()["results"][0]
    assert first["samples"] == [0.30, 0.10, 0.20, 0.40, 0.50]
    assert first["summary"]["p90"] == 0.46 or abs(first["summary"]["p90"] - 0.46) < 1e-9


def test_text_and_markdown_render():
    run = recorded_run()
    run.cleanup = {"clean": True}
    text = report.render_text(run, width=100)
    assert "claimed seconds" in text and "full VM" in text
    assert "Cleanup: every instance removed" in text
    # the runtime's reason once, in full, under the tables
    assert text.count(FULLVM_REASON) == 1
    assert f"ketch full VM: not available: not available: {FULLVM_REASON}" not in text
    md = report.render_markdown(run, ["cpu.png"])
    assert "| claim | container | VM |" in md
    assert "![cpu.png](cpu.png)" in md
    assert f"**ketch full VM** (version unknown, acceleration: None): not available: " \
        f"{FULLVM_REASON}" in md
    assert "- ketch, start to first output (echo): x" in md


def test_no_container_runtime_selected_vs_none_available():
    run = recorded_run()
    run.runtimes = [r for r in run.runtimes if r.kind == "vm"]
    assert report.container_cell(run, "start_trivial") == \
        "n/a: no container runtime selected"
    run = recorded_run(with_ketch=False)
    run.runtimes = [r for r in run.runtimes if r.key != "podman"]
    assert report.container_cell(run, "start_trivial") == \
        "n/a: no container runtime available"
