"""cgroups for ketch containers: v1, v2 and the hybrid layout.

One CgroupManager per container. It owns the container's directory in every
hierarchy the host has (see layout.py) and nothing else: it creates the
missing directories on the way down (remembering which, so destroy() can
remove exactly those), writes limits, moves processes in, freezes, reports
stats, and removes what it created.

    manager_for(path, id)   cgroupsPath -> manager: "" -> <cgroup_parent>/<id>,
                            "/a/b" and "a/b" both -> a/b under each hierarchy root
    create(devices)         mkdir everywhere (cpuset v1: cpus/mems filled in;
                            v2: controllers enabled in the parents' subtree_control;
                            devices: deny all but the default devices and linux.devices)
    add(pid)                pid into every hierarchy (hybrid: v1 dirs and unified)
    join_dirs()             the dirs a process that moves itself in needs
    set(resources)          runtime-spec linux.resources (v1.py / v2.py)
    freeze/thaw/frozen      v1 freezer.state, else v2 cgroup.freeze
    stats()                 runc `events --stats` "data"
    destroy()               rmdir deepest first, retrying while the kernel is busy
                            (ketch's top-level parent, `ketch`, is kept)
    to_state/from_state     survive between ketch-runc invocations

In hybrid mode limits go to the v1 controllers (the unified tree has none
enabled: enabling one would mean writing to the host's root cgroup, which
ketch never touches); the unified dir holds the same processes so that
cgroup2 tools (and the v2 freezer, if the v1 one is absent) see them.
"""

from __future__ import annotations

import errno
import os
import posixpath
import time

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.runtime.cgroups import fs
from ketch.runtime.cgroups.layout import UNIFIED, Layout, detect

# Keys whose directory receives processes first when listing pids.
_PRIMARY = ("pids", "freezer", "memory", "cpu", "devices", UNIFIED)


def cgroup_parent() -> str:
    """ketch.paths.cgroup_parent(), restated: ketch.paths imports pathlib (and with
    it re, fnmatch, urllib), two thirds of ketch-runc's import time. A unit test
    keeps the two equal."""
    return (os.environ.get("KETCH_CGROUP_PARENT") or "ketch").strip("/")


def manager_for(cgroups_path: str | None, container_id: str, layout: Layout | None = None) -> CgroupManager:
    rel = cgroups_path.strip() if cgroups_path else f"{cgroup_parent()}/{container_id}"
    norm = posixpath.normpath("/" + rel).lstrip("/")
    if not norm or "\0" in norm or ".." in rel.split("/"):
        raise InvalidArgument(f"linux.cgroupsPath: {cgroups_path!r} is not a usable cgroup path")
    layout = layout or detect()
    if layout.mode == "v2":
        mounts = {UNIFIED: layout.mounts[UNIFIED]}
    else:
        mounts = dict(layout.mounts)
    if not mounts:
        raise FailedPrecondition("cgroups: no cgroup filesystem is mounted on this host")
    return CgroupManager(layout.mode, norm, {k: os.path.join(m, norm) for k, m in mounts.items()},
                         mounts=mounts)


class CgroupManager:
    def __init__(self, mode: str, path: str, paths: dict[str, str], created: list[str] | None = None,
                 mounts: dict[str, str] | None = None):
        self.mode = mode
        self.path = path
        self.paths = paths
        self.created = list(created or [])
        self.mounts = mounts or {k: d[: -len(path) - 1] for k, d in paths.items()}
        self.linux_devices: list[dict] = []   # linux.devices, allowed whatever the rules say

    # --- lifecycle -------------------------------------------------------------------

    def _dirs(self) -> list[str]:
        """Distinct leaf directories (co-mounted controllers share one)."""
        return list(dict.fromkeys(self.paths.values()))

    def create(self, devices: list | None = None) -> None:
        """mkdir everywhere; a device cgroup made here starts at runc's default policy.

        `devices` is linux.devices: the nodes it makes stay usable (they are
        allowed after any linux.resources.devices rules, now and on set()).
        """
        self.linux_devices = _device_keys(devices)
        try:
            for mount in dict.fromkeys(self.mounts.values()):
                self._mkdirs(mount)
            if "cpuset" in self.paths and self.mode != "v2":
                self._fill_cpuset(self.mounts["cpuset"])
            if self.mode == "v2":
                self._enable_controllers(self.mounts[UNIFIED])
            self._default_devices()
        except BaseException:
            try:
                self.destroy()
            except FailedPrecondition:
                pass  # keep the original error: it says why create failed
            raise

    def allow_linux_devices(self, devices: list | None) -> None:
        """linux.devices for a cgroup create() made before the config was known."""
        self.linux_devices = _device_keys(devices)
        self._default_devices()

    def _default_devices(self) -> None:
        """Deny every device but the defaults and linux.devices, in a cgroup we made.

        A pre-existing cgroup (joined, not made) keeps its policy.
        """
        from ketch.runtime.cgroups import devices

        extra = devices.from_linux_devices(self.linux_devices)
        if self.mode != "v2" and self.paths.get("devices") in self.created:
            devices.apply_v1(self.paths["devices"], devices.DENY_ALL, extra)
        elif self.mode == "v2" and self.paths[UNIFIED] in self.created:
            devices.apply_v2(self.paths[UNIFIED], devices.DENY_ALL, extra)

    def _mkdirs(self, mount: str) -> None:
        current = mount
        for part in self.path.split("/"):
            current = os.path.join(current, part)
            for _attempt in range(3):
                try:
                    os.mkdir(current, 0o755)
                    self.created.append(current)
                    break
                except FileExistsError:
                    break
                except FileNotFoundError:
                    # A concurrent destroy() removed an empty parent we just saw: redo it.
                    os.makedirs(os.path.dirname(current), exist_ok=True)
                except OSError as exc:
                    raise FailedPrecondition(f"create cgroup {current}: {exc.strerror}") from exc

    def _fill_cpuset(self, mount: str) -> None:
        """v1 cpuset dirs start with empty cpus/mems and refuse tasks: copy the parent's."""
        parent = mount
        for part in self.path.split("/"):
            child = os.path.join(parent, part)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not fs.read(child, name):
                    fs.write(child, name, fs.read(parent, name), f"cgroup {child}")
            parent = child

    def _enable_controllers(self, mount: str) -> None:
        """v2: delegate to the container what the root delegates to its children.

        A controller is usable in a dir only if every ancestor lists it in
        cgroup.subtree_control. The root's list belongs to the host and is
        taken as given (never written); below it, each dir on our path gets
        the same list.
        """
        wanted = set(fs.read(mount, "cgroup.subtree_control").split())
        parent = os.path.join(mount, self.path.split("/")[0])
        for part in self.path.split("/")[1:]:
            enabled = set(fs.read(parent, "cgroup.subtree_control").split())
            for ctrl in sorted(wanted - enabled):
                try:
                    fs.write(parent, "cgroup.subtree_control", f"+{ctrl}")
                except (FailedPrecondition, InvalidArgument):
                    pass  # e.g. cpu with realtime tasks in the parent: limits on it will fail later
            wanted &= set(fs.read(parent, "cgroup.subtree_control").split())
            parent = os.path.join(parent, part)

    def add(self, pid: int) -> None:
        for d in self._dirs():
            try:
                fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY)
                try:
                    os.write(fd, str(pid).encode())
                finally:
                    os.close(fd)
            except OSError as exc:
                raise FailedPrecondition(f"add process {pid} to cgroup {d}: {exc.strerror}") from exc

    def join_dirs(self) -> dict:
        """{"v1": [dirs], "v2": dir or None}: where a process that moves itself in
        writes "0" (v1 `tasks`), and the cgroup2 dir to be cloned into."""
        v2 = self.paths.get(UNIFIED)
        return {"v1": [d for d in self._dirs() if d != v2], "v2": v2}

    def pids(self) -> list[int]:
        for key in _PRIMARY:
            if key in self.paths:
                return fs.procs(self.paths[key])
        return fs.procs(self._dirs()[0]) if self.paths else []

    def destroy(self) -> None:
        leaves = set(self._dirs())
        keep = self._ketch_top()
        deadline = time.monotonic() + 2
        for d in sorted(self.created, key=lambda p: p.count("/"), reverse=True):
            if d in leaves:
                _remove_tree(d, deadline)
            elif d not in keep:
                try:
                    os.rmdir(d)   # an intermediate dir: only if nobody else uses it
                except OSError:
                    pass
        self.created = [d for d in self.created if os.path.isdir(d)]
        if any(d in leaves for d in self.created):
            raise FailedPrecondition(f"remove cgroup {self.path}: still busy (processes left in it?)")
        self._remove_empty_parents()

    def _ketch_top(self) -> set[str]:
        """The top dir of ketch's own tree (`ketch`) in each hierarchy, when this
        cgroup is inside it: made once and kept, as runc keeps the parents it
        makes and Docker its /docker. Removing it with every last container
        would cost each later start ten more mkdirs (and the cpuset copies) and
        its delete ten more rmdirs."""
        top = cgroup_parent().split("/")[0]
        if self.path.split("/")[0] != top or self.path == top:
            return set()
        return {os.path.join(m, top) for m in self.mounts.values()}

    def _remove_empty_parents(self) -> None:
        """rmdir empty ancestors inside ketch's own tree (below the top of cgroup_parent()).

        Containers sharing a parent race for it: the one that made it may go
        first while others still use it, and the last one out never made it.
        Everything under the ketch parent is ketch's by design, so whoever
        leaves last removes it. Outside that tree only dirs this manager made
        are removed (above).
        """
        top = cgroup_parent().split("/")[0]
        parts = self.path.split("/")
        if parts[0] != top:
            return
        for n in range(len(parts) - 1, 1, -1):
            for mount in dict.fromkeys(self.mounts.values()):
                try:
                    os.rmdir(os.path.join(mount, *parts[:n]))
                except OSError:
                    pass  # not empty (another container) or already gone

    # --- resources -------------------------------------------------------------------

    @staticmethod
    def validate(resources: dict | None) -> None:
        """Check linux.resources against the running host (at create, before anything exists)."""
        from ketch.runtime.cgroups.validate import validate

        validate(resources)

    def set(self, resources: dict | None) -> None:
        if not resources:
            return
        from ketch.runtime.cgroups.validate import validate

        validate(resources, Layout(self.mode, self.mounts))
        if self.mode == "v2":
            from ketch.runtime.cgroups import v2

            v2.apply(self.paths[UNIFIED], resources, self.linux_devices)
        else:
            from ketch.runtime.cgroups import v1

            v1.apply(self.paths, resources, self.linux_devices)

    def stats(self) -> dict:
        if self.mode == "v2":
            from ketch.runtime.cgroups import v2

            return v2.stats(self.paths[UNIFIED])
        from ketch.runtime.cgroups import v1

        return v1.stats(self.paths)

    # --- freezer ---------------------------------------------------------------------

    def freeze(self) -> None:
        self._freeze(True)

    def thaw(self) -> None:
        self._freeze(False)

    def frozen(self) -> bool:
        if "freezer" in self.paths:
            return fs.read(self.paths["freezer"], "freezer.state") == "FROZEN"
        if UNIFIED in self.paths:
            return fs.read(self.paths[UNIFIED], "cgroup.freeze") == "1"
        return False

    def _freeze(self, on: bool) -> None:
        if "freezer" in self.paths:
            d, name, value = self.paths["freezer"], "freezer.state", "FROZEN" if on else "THAWED"
            done = lambda: fs.read(d, name) == value  # noqa: E731
        elif UNIFIED in self.paths:
            d, name, value = self.paths[UNIFIED], "cgroup.freeze", "1" if on else "0"
            done = lambda: fs.read_kv(d, "cgroup.events").get("frozen") == int(on)  # noqa: E731
        else:
            raise FailedPrecondition("pause: no freezer cgroup on this host")
        deadline = time.monotonic() + 5
        delay = 0.001
        while True:
            # v1 can stay FREEZING while a task is in an uninterruptible sleep: write again.
            fs.write(d, name, value)
            if done():
                return
            if time.monotonic() > deadline:
                if on:
                    fs.write(d, name, "THAWED" if name == "freezer.state" else "0")
                raise FailedPrecondition(f"{'freeze' if on else 'thaw'} cgroup {d}: timed out")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # --- state -----------------------------------------------------------------------

    def to_state(self) -> dict:
        return {"mode": self.mode, "path": self.path, "paths": dict(self.paths),
                "created": list(self.created), "mounts": dict(self.mounts),
                "linux_devices": self.linux_devices}

    @classmethod
    def from_state(cls, d: dict) -> CgroupManager:
        m = cls(d["mode"], d["path"], d["paths"], d.get("created"), d.get("mounts"))
        m.linux_devices = list(d.get("linux_devices") or [])
        return m


def _device_keys(devices: list | None) -> list[dict]:
    return [{k: d.get(k) for k in ("type", "major", "minor")}
            for d in devices or [] if isinstance(d, dict)]


def _remove_tree(top: str, deadline: float) -> None:
    """rmdir a cgroup and its children, deepest first.

    The kernel answers EBUSY for a moment after the last task exits; that is
    retried until `deadline`. A cgroup that still lists processes is not
    waited for: killing them is the caller's job.
    """
    try:
        os.rmdir(top)  # the usual case, a leaf without children: no walk over its files
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: t[0].count("/"), reverse=True):
        delay = 0.002
        while True:
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if (exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline
                        or fs.procs(dirpath)):
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
