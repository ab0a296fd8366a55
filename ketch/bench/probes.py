"""Host-side measurements: memory of processes, free memory, allocated disk.

Everything here reads the host's /proc and /sys and file metadata; nothing
writes. The instance-specific part (which processes, which directories) is
decided by the runtime adapters; this module only measures what it is given.

- PSS (proportional set size) of a set of processes comes from
  /proc/PID/smaps_rollup: pages shared between k processes count 1/k to each,
  so summing PSS over an instance's processes charges it its fair share of the
  shared busybox text and the full cost of its private memory.
- MemAvailable comes from /proc/meminfo: the kernel's estimate of memory
  available without swapping; its drop while N instances run is a second,
  whole-host view of the same cost (noisier: other work on the host moves it).
- Disk use is allocated blocks (st_blocks * 512), each inode counted once
  however many hard links reach it; the apparent size (st_size) is kept beside
  it so sparse and thin files show up as the gap between the two.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def pss_bytes(pid: int) -> int | None:
    """PSS of one process in bytes, or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def total_pss(pids: set[int] | list[int]) -> tuple[int, int]:
    """(sum of PSS in bytes, how many processes were measured)."""
    total = counted = 0
    for pid in set(pids):
        value = pss_bytes(pid)
        if value is not None:
            total += value
            counted += 1
    return total, counted


def mem_available() -> int:
    """MemAvailable of /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def cgroup_dirs(relative: str) -> list[Path]:
    """The directory of cgroup `relative` in every mounted hierarchy (v1, v2, hybrid)."""
    relative = relative.strip("/")
    found = []
    candidates = [CGROUP_ROOT]
    if CGROUP_ROOT.is_dir():
        candidates += [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    for hier in candidates:
        d = hier / relative
        if (d / "cgroup.procs").exists():
            found.append(d)
    return found


def read_pids(procs_file: Path) -> set[int]:
    """The pids listed in one cgroup.procs file (empty if it is gone)."""
    try:
        return {int(x) for x in procs_file.read_text().split()}
    except (OSError, ValueError):
        return set()


def cgroup_pids(relative: str) -> set[int]:
    """Every process in cgroup `relative` or below it, across all hierarchies."""
    pids: set[int] = set()
    for base in cgroup_dirs(relative):
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" not in files:
                continue
            try:
                text = Path(dirpath, "cgroup.procs").read_text()
            except OSError:
                continue
            pids.update(int(x) for x in text.split())
    return pids


def remove_cgroup_tree(relative: str) -> list[str]:
    """rmdir `relative` and its children in every hierarchy; returns what could not go."""
    left = []
    for base in cgroup_dirs(relative):
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(dirpath)
    return left


def proc_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pids_mentioning(token: str) -> set[int]:
    """Processes whose command line contains `token` (a container id or a private path).

    Used to find an instance's helpers outside its cgroup: the per-container
    monitor (ketch-monitor, conmon), a containerd shim, QEMU. The token is always unique to
    this run (a random id or a path under the bench's work directory).
    """
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and token in proc_cmdline(int(entry)):
            found.add(int(entry))
    return found


def descendants(pids: set[int]) -> set[int]:
    """pids plus all their descendants (by PPid in /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, []))
    return out


@dataclass(frozen=True)
class DiskUse:
    allocated: int   # st_blocks * 512, hard links once
    apparent: int    # st_size, hard links once
    files: int

    @property
    def sparse(self) -> bool:
        """Apparent size well above allocation: sparse or thin files are present."""
        return self.apparent > self.allocated * 1.2 + 1024 * 1024


def cmdline_files(pid: int) -> set[Path]:
    """Files a QEMU command line names: -kernel, -initrd, and file= of -drive.

    QEMU reads the kernel and initramfs at start and closes them, so they do
    not show among its open files, yet every boot needs them on disk.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return set()
    found = set()
    for flag, value in zip(args, args[1:], strict=False):
        candidates = [value] if flag in ("-kernel", "-initrd") else []
        if flag == "-drive":
            candidates = [p[5:] for p in value.split(",") if p.startswith("file=")]
        found |= {Path(c) for c in candidates if c.startswith("/") and os.path.isfile(c)}
    return found


def open_files(pids: set[int]) -> set[Path]:
    """Regular files the processes hold open or name as QEMU images (disks, kernel, initramfs)."""
    found = set()
    for pid in pids:
        found |= cmdline_files(pid)
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/") and not target.endswith(" (deleted)") \
                    and not target.startswith(("/dev/", "/proc/", "/sys/")) \
                    and os.path.isfile(target):
                found.add(Path(target))
    return found


def disk_use(paths: list[Path], exclude: list[Path] | None = None,
             files: list[Path] | None = None) -> DiskUse:
    """Allocated and apparent bytes under paths (+ single files), each inode once.

    The walk does not cross mounts: a running container's rootfs mount shows
    bytes that already live in the layers being counted.
    """
    seen: set[tuple[int, int]] = set()
    allocated = apparent = count = 0
    for f in files or []:
        try:
            st = f.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            allocated += st.st_blocks * 512
            apparent += st.st_size
            count += 1
    skip = {str(p) for p in exclude or []}
    for top in paths:
        if not top.exists():
            continue
        top_dev = top.lstat().st_dev
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
            for name in [*dirnames, *filenames, None]:
                path = dirpath if name is None else os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if st.st_dev != top_dev:
                    if name is not None and stat.S_ISDIR(st.st_mode):
                        dirnames[:] = [d for d in dirnames if d != name]
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                allocated += st.st_blocks * 512
                apparent += st.st_size
                count += 1
    return DiskUse(allocated=allocated, apparent=apparent, files=count)


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below prefix, deepest first."""
    prefix_s = str(prefix)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == prefix_s or mnt.startswith(prefix_s + "/"):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)
