"""Host probes and workload parsing of ketch bench, on files and outputs made here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ketch.bench import probes, workloads


def test_disk_use_counts_hard_links_once(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"x" * 100_000)
    os.link(a, tmp_path / "b")
    (tmp_path / "sub").mkdir()
    os.link(a, tmp_path / "sub" / "c")
    use = probes.disk_use([tmp_path])
    st = a.stat()
    dirs = sum(os.lstat(p).st_blocks * 512 for p in (tmp_path, tmp_path / "sub"))
    assert use.allocated == st.st_blocks * 512 + dirs
    assert use.files == 3  # a (once) and the two directories


def test_disk_use_sees_sparse_files(tmp_path):
    f = tmp_path / "disk.img"
    with open(f, "wb") as out:
        out.truncate(64 * 2**20)  # 64 MiB apparent, nothing allocated
    use = probes.disk_use([tmp_path])
    assert use.apparent >= 64 * 2**20
    assert use.allocated < 2**20
    assert use.sparse


def test_disk_use_of_missing_path_is_zero(tmp_path):
    assert probes.disk_use([tmp_path / "nope"]).allocated == 0


def test_pss_of_self_and_of_a_gone_process():
    pss = probes.pss_bytes(os.getpid())
    if pss is None:
        pytest.skip("/proc/self/smaps_rollup is not readable here")
    assert pss > 0
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert probes.pss_bytes(child.pid) is None
    total, counted = probes.total_pss([os.getpid(), child.pid])
    assert counted == 1 and total > 0


def test_mem_available_is_positive():
    assert probes.mem_available() > 0


def test_descendants_include_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in probes.descendants({os.getpid()})
    finally:
        child.kill()
        child.wait()


def test_parse_elapsed():
    out = "82cb7cd0  -\nelapsed 1234.56 1236.06\n"
    assert workloads.parse_elapsed(out) == pytest.approx(1.5)
    assert workloads.parse_elapsed("no marker") is None


def test_parse_io():
    # 128 MiB = 134.217728 MB written in 0.5 s; read READ_PASSES times in 0.25 s
    write, read = workloads.parse_io("io 10.00 10.50 10.75\n", 128)
    assert write == pytest.approx(134.217728 / 0.5)
    assert read == pytest.approx(workloads.READ_PASSES * 134.217728 / 0.25)
    with pytest.raises(ValueError, match="too fast"):
        workloads.parse_io("io 10.00 10.00 10.10\n", 1)
    with pytest.raises(ValueError, match="no I/O timing"):
        workloads.parse_io("dd: can't open", 1)


def test_run_timed_notes_first_output_and_exit():
    t = workloads.run_timed([sys.executable, "-c", "print('hi', flush=True)"], timeout=30)
    assert t.returncode == 0
    assert t.first_output is not None and t.exited is not None
    assert t.first_output <= t.exited
    assert [ln for _, ln in t.line_times] == ["hi"]


def test_run_timed_kills_on_timeout():
    t = workloads.run_timed([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert t.returncode == -9
    assert t.first_output is None


def test_open_files_reads_qemu_style_command_lines(tmp_path):
    kernel, disk = tmp_path / "vmlinux", tmp_path / "disk.img"
    kernel.write_bytes(b"k")
    disk.write_bytes(b"d")
    # A process whose argv looks like QEMU's; it holds neither file open.
    code = "import time; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code, "-kernel", str(kernel),
                              "-drive", f"id=disk,file={disk},format=raw,if=none",
                              "-initrd", str(tmp_path / "missing")])
    try:
        deadline = 50
        while deadline and "-kernel" not in probes.proc_cmdline(child.pid):
            deadline -= 1
            subprocess.run(["sleep", "0.05"])
        assert probes.open_files({child.pid}) >= {kernel, disk}
        assert tmp_path / "missing" not in probes.open_files({child.pid})
    finally:
        child.kill()
        child.wait()
