"""The container's filesystem tree: mounts, /dev, pivot_root, masked paths.

Policy only; every syscall goes through `sys`, an object with the functions
of ketch._sys.mount plus os-style mkdir/mknod/symlink/chown (see RealSys), so
unit tests pass a recording fake and assert on the calls.

Mount destinations are resolved with `secure_join`: each component is looked
up inside the rootfs and symlinks are followed *as if the rootfs were /*, so
a container image that points /proc -> /etc or a -> ../../.. cannot make a
mount land outside its root.
"""

from __future__ import annotations

import os
import stat

from ketch._sys import mount as m

# option -> (set, clear) flags; runc's table
_FLAGS = {
    "ro": (m.MS_RDONLY, 0), "rw": (0, m.MS_RDONLY),
    "nosuid": (m.MS_NOSUID, 0), "suid": (0, m.MS_NOSUID),
    "nodev": (m.MS_NODEV, 0), "dev": (0, m.MS_NODEV),
    "noexec": (m.MS_NOEXEC, 0), "exec": (0, m.MS_NOEXEC),
    "sync": (m.MS_SYNCHRONOUS, 0), "async": (0, m.MS_SYNCHRONOUS),
    "dirsync": (m.MS_DIRSYNC, 0), "remount": (m.MS_REMOUNT, 0),
    "mand": (m.MS_MANDLOCK, 0), "nomand": (0, m.MS_MANDLOCK),
    "atime": (0, m.MS_NOATIME), "noatime": (m.MS_NOATIME, 0),
    "diratime": (0, m.MS_NODIRATIME), "nodiratime": (m.MS_NODIRATIME, 0),
    "relatime": (m.MS_RELATIME, 0), "norelatime": (0, m.MS_RELATIME),
    "strictatime": (m.MS_STRICTATIME, 0), "nostrictatime": (0, m.MS_STRICTATIME),
    "nosymfollow": (m.MS_NOSYMFOLLOW, 0), "lazytime": (m.MS_LAZYTIME, 0),
    "bind": (m.MS_BIND, 0), "rbind": (m.MS_BIND | m.MS_REC, 0),
}
PROPAGATION = {
    "private": m.MS_PRIVATE, "rprivate": m.MS_PRIVATE | m.MS_REC,
    "shared": m.MS_SHARED, "rshared": m.MS_SHARED | m.MS_REC,
    "slave": m.MS_SLAVE, "rslave": m.MS_SLAVE | m.MS_REC,
    "unbindable": m.MS_UNBINDABLE, "runbindable": m.MS_UNBINDABLE | m.MS_REC,
}
_IGNORED = {"tmpcopyup", "idmap", "ridmap", "defaults"}

DEFAULT_DEVICES = [  # runc's defaults: path, major, minor
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
]


class RealSys:
    """The real syscall layer, as `rootfs` policy sees it."""

    mount = staticmethod(m.mount)
    umount2 = staticmethod(m.umount2)
    pivot_root = staticmethod(m.pivot_root)
    chroot = staticmethod(os.chroot)
    chdir = staticmethod(os.chdir)
    mknod = staticmethod(os.mknod)
    chown = staticmethod(os.chown)
    chmod = staticmethod(os.chmod)
    symlink = staticmethod(os.symlink)

    @staticmethod
    def makedirs(path: str, mode: int = 0o755) -> None:
        os.makedirs(path, mode, exist_ok=True)

    @staticmethod
    def touch(path: str) -> None:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Mount options -> (flags, propagation flags, data string)."""
    flags = prop = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            set_, clear = _FLAGS[opt]
            flags = (flags | set_) & ~clear
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        elif opt not in _IGNORED:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """`unsafe` resolved under `root`, symlinks followed as if root were "/"."""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, part)
        try:
            target = os.readlink(here)
        except OSError:
            done.append(part)  # not a symlink, or does not exist yet
            continue
        hops += 1
        if hops > 255:
            raise OSError(40, "too many levels of symbolic links", unsafe)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *done)


def prepare_root(sys, rootfs: str, propagation: str | None) -> None:
    """Make the rootfs a mount point whose events never reach the host."""
    # Slave (or the asked propagation) on the whole tree first: nothing the
    # container mounts may propagate back into the host's namespace.
    flag = PROPAGATION.get(propagation or "", m.MS_SLAVE | m.MS_REC)
    sys.mount(None, "/", None, flag | m.MS_REC)
    # pivot_root refuses a new root whose parent mount is shared (a "shared"
    # rootfsPropagation made it so): make just that parent private.
    parent = _mount_point_of(rootfs)
    if parent is not None:
        sys.mount(None, parent, None, m.MS_PRIVATE)
    # pivot_root needs new_root to be a mount point: bind it onto itself.
    sys.mount(rootfs, rootfs, None, m.MS_BIND | m.MS_REC)


def root_propagation(sys, propagation: str | None) -> None:
    """After pivot_root: shared/unbindable must hold for the new "/" itself."""
    if propagation and ("shared" in propagation or "unbindable" in propagation):
        sys.mount(None, "/", None, PROPAGATION[propagation] | m.MS_REC)


def _mount_point_of(path: str) -> str | None:
    """The mount point of the mount that holds `path` (longest prefix in mountinfo)."""
    best = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and \
                        (best is None or len(point) > len(best)):
                    best = point
    except OSError:
        return None
    return best


def mount_entry(sys, rootfs: str, entry: dict, bundle: str, cgroupns: bool = False) -> None:
    """One runtime-spec mount, at its destination resolved inside rootfs."""
    kind = entry.get("type") or ""
    source = entry.get("source") or kind or "none"
    flags, prop, data = parse_options(entry.get("options") or [])
    is_bind = bool(flags & m.MS_BIND) or kind == "bind"
    if is_bind:
        flags |= m.MS_BIND
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
    dest = secure_join(rootfs, entry["destination"])
    if is_bind and os.path.exists(source) and not os.path.isdir(source):
        sys.makedirs(os.path.dirname(dest))
        if not os.path.lexists(dest):
            sys.touch(dest)
    else:
        sys.makedirs(dest)
    if kind == "cgroup":
        _mount_cgroup(sys, dest, flags, data, cgroupns)
    elif is_bind:
        sys.mount(source, dest, None, flags & (m.MS_BIND | m.MS_REC))
        # A bind ignores every other flag; a remount applies them.
        rest = flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
        if rest:
            sys.mount(None, dest, None, m.MS_REMOUNT | m.MS_BIND | rest)
    else:
        sys.mount(source, dest, kind or None, flags, data or None)
    if prop:
        sys.mount(None, dest, None, prop)


def _host_cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, controller options) of each hierarchy under /sys/fs/cgroup."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = left.split()[4]
            fstype, _src, opts = right.split()[:3]
            if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup/"):
                keep = [o for o in opts.split(",") if o not in ("rw", "ro")]
                out.append((point, fstype, ",".join(keep) if fstype == "cgroup" else ""))
    return out


def _own_cgroups() -> dict[str, str]:
    """controllers ("memory", "cpu,cpuacct", "name=systemd", "" for v2) -> our cgroup path."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def _mount_cgroup(sys, dest: str, flags: int, data: str, cgroupns: bool) -> None:
    """/sys/fs/cgroup as the container sees it.

    cgroup v2 only: one cgroup2 mount. v1 or hybrid: a tmpfs with one mount
    per host hierarchy; inside a cgroup namespace these are fresh mounts, so
    each shows the container's own subtree as its root.
    """
    base = (flags & ~m.MS_REMOUNT) | m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        if cgroupns:
            sys.mount("cgroup2", dest, "cgroup2", base, data or None)
        else:
            sys.mount("/sys/fs/cgroup", dest, None, m.MS_BIND | m.MS_REC)
            sys.mount(None, dest, None, m.MS_REMOUNT | m.MS_BIND | base)
        return
    sys.mount("tmpfs", dest, "tmpfs", m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC, "mode=755")
    own = {} if cgroupns else _own_cgroups()
    for point, fstype, opts in _host_cgroup_mounts():
        sub = os.path.join(dest, os.path.basename(point))
        sys.makedirs(sub)
        if cgroupns:
            sys.mount("cgroup", sub, fstype, base, opts or None)
        else:
            # No cgroup namespace: bind just our own cgroup, so the container
            # reads its own limits at the usual place (as runc does).
            mine = own.get(opts if fstype == "cgroup" else "", "/")
            sys.mount(point + mine.rstrip("/"), sub, None, m.MS_BIND | m.MS_REC)
            sys.mount(None, sub, None, m.MS_REMOUNT | m.MS_BIND | base)
    for name in os.listdir("/sys/fs/cgroup"):  # cpu -> cpu,cpuacct and friends
        host = os.path.join("/sys/fs/cgroup", name)
        if os.path.islink(host) and not os.path.lexists(os.path.join(dest, name)):
            sys.symlink(os.readlink(host), os.path.join(dest, name))
    if flags & m.MS_RDONLY:
        sys.mount(None, dest, None, m.MS_REMOUNT | m.MS_RDONLY | m.MS_NOSUID | m.MS_NODEV
                  | m.MS_NOEXEC)


def create_devices(sys, rootfs: str, devices: list[dict], bind: bool) -> None:
    """Default devices plus linux.devices; bind from the host where mknod is denied."""
    wanted = {d["path"]: d for d in devices}
    for path, major, minor in DEFAULT_DEVICES:
        wanted.setdefault(path, {"path": path, "type": "c", "major": major, "minor": minor,
                                 "fileMode": 0o666, "uid": 0, "gid": 0})
    for dev in wanted.values():
        dest = secure_join(rootfs, dev["path"])
        sys.makedirs(os.path.dirname(dest))
        if bind:  # user namespace: mknod is not allowed, bind the host node
            if not os.path.lexists(dest):
                sys.touch(dest)
            sys.mount(dev["path"], dest, None, m.MS_BIND)
            continue
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                "p": stat.S_IFIFO}[dev["type"]]
        mode = dev.get("fileMode")
        mode = 0o666 if mode is None else mode
        if os.path.lexists(dest):
            os.unlink(dest)
        sys.mknod(dest, kind | (mode & 0o7777), os.makedev(dev.get("major", 0),
                                                           dev.get("minor", 0)))
        sys.chmod(dest, mode & 0o7777)  # mknod applies the umask; the spec's mode wins
        sys.chown(dest, dev.get("uid") or 0, dev.get("gid") or 0)


def dev_symlinks(sys, rootfs: str) -> None:
    links = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]
    if os.path.exists(os.path.join(rootfs, "dev/pts/ptmx")):
        links.append(("pts/ptmx", "/dev/ptmx"))
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for target, link in links:
        dest = secure_join(rootfs, link)
        if os.path.lexists(dest):
            if link != "/dev/ptmx":
                continue
            os.unlink(dest)
        sys.symlink(target, dest)


def pivot(sys, rootfs: str) -> None:
    """pivot_root into rootfs and detach the old root (runc's "." trick)."""
    # pivot_root(".", ".") stacks the old root on top of the new one, so no
    # directory for it is needed inside the container's tree.
    sys.chdir(rootfs)
    sys.pivot_root(".", ".")
    # The old root must not propagate its unmount to the host: slave first.
    sys.mount(None, ".", None, m.MS_SLAVE | m.MS_REC)
    sys.umount2(".", m.MNT_DETACH)
    sys.chdir("/")


def move_root(sys, rootfs: str) -> None:
    """--no-pivot: move the rootfs over / and chroot (for ramfs roots)."""
    sys.chdir(rootfs)
    sys.mount(rootfs, "/", None, m.MS_MOVE)
    sys.chroot(".")
    sys.chdir("/")


def mask_paths(sys, paths: list[str]) -> None:
    for path in paths:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            sys.mount("tmpfs", path, "tmpfs", m.MS_RDONLY)
        else:
            sys.mount("/dev/null", path, None, m.MS_BIND)


def readonly_paths(sys, paths: list[str]) -> None:
    for path in paths:
        if not os.path.lexists(path):
            continue
        sys.mount(path, path, None, m.MS_BIND | m.MS_REC)
        sys.mount(None, path, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | m.MS_REC
                  | _locked_flags(path))


def readonly_root(sys) -> None:
    sys.mount(None, "/", None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | _locked_flags("/"))


def _locked_flags(path: str) -> int:
    """nosuid/nodev/noexec/atime flags already on the mount: a remount must keep them."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    # ST_* bits equal MS_* bits for these.
    return f & (m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC | m.MS_NOATIME | m.MS_NODIRATIME
                | m.MS_RELATIME)
