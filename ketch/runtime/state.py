"""A container's on-disk state: <root>/<id>/state.json and exec.fifo.

The status is not stored, it is derived (as runc does): no live init (or a
pid reused by another process, caught by its start time) -> stopped;
exec.fifo still present -> created; cgroup frozen -> paused; else running.
`can_*` guards sit here so every verb checks transitions in one place.
"""

from __future__ import annotations

import os

from ketch.errors import Conflict, InvalidArgument, NotFound

CREATING, CREATED, RUNNING, STOPPED, PAUSED = "creating", "created", "running", "stopped", \
    "paused"
OCI_VERSION = "1.2.0"


def default_root() -> str:
    return os.environ.get("KETCH_RUNC_ROOT") or "/run/ketch-runc"


def check_id(cid: str) -> None:
    ok = cid and cid not in (".", "..") and len(cid) <= 1024 and all(
        c.isalnum() or c in "_+-." for c in cid)
    if not ok:
        raise InvalidArgument(f"invalid container id {cid!r}")


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


class Container:
    """One container's saved state plus the operations that read it."""

    def __init__(self, root: str, cid: str, data: dict):
        self.root = root
        self.id = cid
        self.data = data
        self.console: int | None = None  # pty master, when `run` holds the terminal

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    @property
    def pid(self) -> int:
        return self.data.get("pid") or 0

    @property
    def config(self) -> dict:
        return self.data["config"]

    @classmethod
    def load(cls, root: str, cid: str) -> Container:
        from ketch.runtime import fastjson
        check_id(cid)
        try:
            with open(os.path.join(root, cid, "state.json"), "rb") as f:
                data = fastjson.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {cid!r} does not exist") from None
        except ValueError:
            raise NotFound(f"container {cid!r} has no readable state") from None
        return cls(root, cid, data)

    def save(self) -> None:
        """Atomically for readers: temp file, rename.

        No fsync: this is runtime state (its root is a tmpfs in the usual
        /run), and nothing it describes survives the crash an fsync would
        guard against. Where /run is a disk, as on this host, it costs each
        create a device flush (~1.4 ms); runc does not sync its state either.
        """
        from ketch.runtime import fastjson
        tmp = os.path.join(self.dir, ".state.json.tmp")
        with open(tmp, "w") as f:
            f.write(fastjson.dumps(self.data))
        os.rename(tmp, os.path.join(self.dir, "state.json"))

    def alive(self) -> bool:
        return bool(self.pid) and proc_start_time(self.pid) == self.data.get("pid_start")

    def status(self) -> str:
        if not self.alive():
            return STOPPED
        if os.path.exists(self.fifo):
            return CREATED
        if self.data.get("cgroup") and self.cgroup().frozen():
            return PAUSED
        return RUNNING

    def remove(self) -> None:
        """Remove the state directory (its few files, then itself)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(self.dir, name))
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

    def cgroup(self):
        from ketch.runtime.cgroups import CgroupManager
        return CgroupManager.from_state(self.data["cgroup"])

    def oci_state(self, status: str | None = None) -> dict:
        status = status or self.status()
        return {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status,
            "pid": self.pid if status != STOPPED else 0,
            "bundle": self.data["bundle"],
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": "",
            "annotations": self.config.get("annotations") or {},
        }

    # -- transition guards ------------------------------------------------
    def need(self, *allowed: str, verb: str) -> str:
        status = self.status()
        if status not in allowed:
            raise Conflict(f"cannot {verb} container {self.id!r}: it is {status}")
        return status


def list_ids(root: str) -> list[str]:
    try:
        return sorted(d for d in os.listdir(root)
                      if os.path.isfile(os.path.join(root, d, "state.json")))
    except FileNotFoundError:
        return []


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)
