"""Resource and security flags, each checked from inside the container.

Probes only read (cgroup files, /proc/self/status, mountinfo) or try one
harmless write into the container's own rootfs.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

# The container's own cgroup file for a v1 controller or v2: runc bind-mounts the
# container's cgroup at /sys/fs/cgroup/<ctl>, other runtimes show the whole tree
# read-only, where /proc/self/cgroup gives the path.
CG = r'''
cg() {  # cg <v1 controller> <file>
  p=$(grep -E ":$1(,[^:]*)?:|^0::" /proc/self/cgroup | head -1 | cut -d: -f3)
  for d in /sys/fs/cgroup/$1$p /sys/fs/cgroup/$1 /sys/fs/cgroup$p /sys/fs/cgroup/unified$p; do
    [ -e "$d/$2" ] && { cat "$d/$2"; return; }
  done
  echo missing
}
'''
NONE = ("--network", "none")


def test_cpus_memory_and_swap_limits(ketch, busybox):
    script = CG + (
        'if [ -e /sys/fs/cgroup/memory ]; then '
        'echo $(cg cpu cpu.cfs_quota_us) $(cg cpu cpu.cfs_period_us) '
        '$(cg memory memory.limit_in_bytes) $(cg memory memory.memsw.limit_in_bytes); '
        'else echo $(cg "" cpu.max) $(cg "" memory.max) $(cg "" memory.swap.max); fi')
    out = ketch("run", "--rm", *NONE, "--cpus=1.0", "--memory=512m", "--memory-swap=1g",
                busybox, "sh", "-c", script).stdout.split()
    if len(out) == 4:   # cgroup v1 (or hybrid with v1 memory): memsw = memory + swap
        assert out == ["100000", "100000", str(512 << 20), str(1 << 30)]
    else:               # cgroup v2: cpu.max "quota period", swap.max = swap alone
        assert out == ["100000", "100000", str(512 << 20), str(512 << 20)]


def test_memory_hog_is_oom_killed_137_and_inspect_says_so(ketch, busybox):
    # `tail` of an endless line buffers it all: it grows until the limit kills it.
    proc = ketch("run", "--name", "hog", *NONE, "--memory=16m", "--memory-swap=16m", busybox,
                 "tail", "/dev/zero", check=False, timeout=120)
    try:
        assert proc.returncode == 137
        state = json.loads(ketch("inspect", "-f", "{{json .State}}", "hog").stdout)
        assert state["OOMKilled"] is True and state["ExitCode"] == 137
    finally:
        ketch("rm", "-f", "hog")


def test_user_nobody(ketch, busybox):
    out = ketch("run", "--rm", *NONE, "--user", "nobody:nogroup", busybox, "sh", "-c",
                "echo $(id -u) $(id -g)").stdout.split()
    assert out == ["65534", "65534"]
    bad = ketch("run", "--rm", *NONE, "--user", "nosuchuser", busybox, "true", check=False)
    assert bad.returncode == 125 and "nosuchuser" in bad.stderr


def test_read_only_root_keeps_tmpfs_and_volumes_writable(ketch, busybox):
    out = ketch("run", "--rm", *NONE, "--read-only", "--tmpfs", "/scratch", "-v", "data:/data",
                busybox, "sh", "-c",
                "touch /probe 2>&1; echo t > /scratch/ok && echo tmpfs-ok; "
                "echo v > /data/ok && echo volume-ok").stdout
    assert "Read-only file system" in out
    assert "tmpfs-ok" in out and "volume-ok" in out
    ketch("volume", "rm", "data")


def test_no_new_privileges_and_setuid(ketch, myapp):
    if not shutil.which("gcc"):
        pytest.skip("needs gcc to build the setuid probe")
    plain = ketch("run", "--rm", *NONE, "--entrypoint", "", myapp, "sh", "-c",
                  "grep NoNewPrivs /proc/self/status; /probe").stdout
    assert "NoNewPrivs:\t0" in plain and "euid=0" in plain   # the probe works: setuid root
    nnp = ketch("run", "--rm", *NONE, "--security-opt=no-new-privileges", "--entrypoint", "",
                myapp, "sh", "-c", "grep NoNewPrivs /proc/self/status; /probe").stdout
    assert "NoNewPrivs:\t1" in nnp and "euid=65534" in nnp


def test_docker_default_caps_masks_shm_and_hostname(ketch, busybox):
    if not os.path.exists("/proc/timer_list"):
        pytest.skip("the host kernel has no /proc/timer_list to mask")
    out = ketch("run", "--rm", *NONE, busybox, "sh", "-c",
                "grep -E 'CapEff|CapBnd' /proc/self/status; cat /proc/timer_list | wc -c; "
                "grep -E ' /dev/shm | /proc/sys ' /proc/self/mountinfo").stdout
    # Docker's 14 default capabilities.
    assert "CapEff:\t00000000a80425fb" in out and "CapBnd:\t00000000a80425fb" in out
    lines = out.splitlines()
    assert lines[2].strip() == "0"                     # /proc/timer_list is masked
    assert any(" /dev/shm " in ln and "size=65536k" in ln for ln in lines)
    assert any(" /proc/sys " in ln and " ro," in ln for ln in lines)
    seccomp = ketch("run", "--rm", *NONE, busybox, "grep", "^Seccomp:", "/proc/self/status")
    assert seccomp.stdout.split() == ["Seccomp:", "2"]        # the default profile, filtering
    unconfined = ketch("run", "--rm", *NONE, "--security-opt", "seccomp=unconfined", busybox,
                       "grep", "^Seccomp:", "/proc/self/status")
    assert unconfined.stdout.split() == ["Seccomp:", "0"]
    drop = ketch("run", "--rm", *NONE, "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
                 busybox, "grep", "CapEff", "/proc/self/status").stdout
    assert drop.split()[1] == "0000000000000400"


def test_pids_limit_and_ulimit(ketch, busybox):
    out = ketch("run", "--rm", *NONE, "--pids-limit", "64", "--ulimit", "nofile=512:768",
                busybox, "sh", "-c", CG + "cg pids pids.max; ulimit -n; ulimit -Hn").stdout
    assert out.split() == ["64", "512", "768"]
