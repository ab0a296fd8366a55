"""Mount a container's prepared rootfs for the engine, and take it down again.

Snapshotters and the image store *describe* mounts (runtime-spec shape:
type, source, options, optional destination); this module performs them, on
`target` (or at `destination` resolved inside `target`), and undoes them.
A failure halfway unmounts what was mounted, so nothing is left behind.
"""

from __future__ import annotations

import os

from ketch._sys import mount as m
from ketch.errors import FailedPrecondition
from ketch.runtime.rootfs import parse_options, secure_join


def mount_all(mounts: list[dict], target: str) -> None:
    """Perform `mounts` in order on `target`; all or nothing."""
    target = os.path.realpath(target)
    os.makedirs(target, exist_ok=True)
    done: list[str] = []
    try:
        for entry in mounts:
            dest = target
            if entry.get("destination") not in (None, "", "/"):
                dest = secure_join(target, entry["destination"])
                try:
                    os.makedirs(dest, exist_ok=True)
                except OSError as exc:
                    raise FailedPrecondition(f"mount point {dest!r}: "
                                             f"{os.strerror(exc.errno)}") from None
            _mount_one(entry, dest)
            done.append(dest)
    except BaseException:
        for dest in reversed(done):
            try:
                m.umount2(dest, m.MNT_DETACH)
            except OSError:
                pass
        raise


def _mount_one(entry: dict, dest: str) -> None:
    kind = entry.get("type") or ""
    source = entry.get("source") or kind or "none"
    flags, prop, data = parse_options(entry.get("options") or [])
    try:
        if kind == "bind" or flags & m.MS_BIND:
            m.mount(source, dest, None, (flags & (m.MS_BIND | m.MS_REC)) | m.MS_BIND)
            rest = flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
            if rest:
                m.mount(None, dest, None, m.MS_REMOUNT | m.MS_BIND | rest)
        else:
            m.mount(source, dest, kind or None, flags, data or None)
        if prop:
            m.mount(None, dest, None, prop)
    except OSError as exc:
        raise FailedPrecondition(f"mount {kind or 'bind'} {source!r} on {dest!r}: "
                                 f"{os.strerror(exc.errno)}") from None


def mounted_under(target: str) -> list[str]:
    """Mount points at or below `target`, deepest first."""
    target = os.path.realpath(target)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(target: str) -> None:
    """Unmount everything at or below `target` (stacked mounts included)."""
    for _ in range(64):  # a point can hold several stacked mounts
        points = mounted_under(target)
        if not points:
            return
        for point in points:
            try:
                m.umount2(point, m.MNT_DETACH)
            except OSError as exc:
                raise FailedPrecondition(f"unmount {point!r}: {os.strerror(exc.errno)}") from None
    raise FailedPrecondition(f"unmount {target!r}: mounts keep reappearing")
