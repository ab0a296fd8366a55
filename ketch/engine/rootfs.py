"""Mounting a container's prepared rootfs on <bundle>/rootfs, and unmounting it.

The image store describes the mounts (overlay on the image's chain, or a
bind of a copied directory); runtime code performs them. When the runtime
core's `ketch.runtime.mount` is present it is used; otherwise a minimal
mount(2) through libc does the same for the two shapes the store returns.
"""

from __future__ import annotations

import ctypes
import os

from ketch.errors import KetchError

MS_BIND, MS_REC, MNT_DETACH = 0x1000, 0x4000, 2


def _libc():
    # Not ctypes.util.find_library: it forks `ldconfig -p` (~20 ms) on every call.
    return ctypes.CDLL("libc.so.6", use_errno=True)


def is_mounted(target: str) -> bool:
    target = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == target for line in f)


def mount(mounts: list[dict], target: str) -> None:
    os.makedirs(target, exist_ok=True)
    if is_mounted(target):
        return
    try:
        from ketch.runtime import mount as rtmount
    except ImportError:
        rtmount = None
    if rtmount is not None and hasattr(rtmount, "mount_all"):
        rtmount.mount_all(mounts, target)
        return
    libc = _libc()
    for m in mounts:
        opts = list(m.get("options") or [])
        flags = 0
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            flags = MS_BIND | (MS_REC if "rbind" in opts else 0)
            opts = [o for o in opts if o not in ("bind", "rbind", "rw")]
        data = ",".join(opts).encode() if opts else None
        rc = libc.mount(str(m.get("source", "none")).encode(), target.encode(),
                        str(m.get("type", "none")).encode(), flags, data)
        if rc != 0:
            err = ctypes.get_errno()
            raise KetchError(f"mount rootfs on {target!r}: {os.strerror(err)}")


def volatile(mounts: list[dict]) -> list[dict]:
    """The same mounts, overlays marked `volatile`: for a --rm container's rootfs.

    Unmounting an overlay syncs its whole upper filesystem (syncfs), which cost
    0.1-0.7 s per `run --rm` on a busy host; an upper layer that is deleted
    right after has nothing worth making durable. A volatile overlay cannot be
    mounted again after a crash, which never happens here: --rm removes it.
    """
    out = []
    for m in mounts:
        opts = list(m.get("options") or [])
        if m.get("type") == "overlay" and "volatile" not in opts:
            m = {**m, "options": [*opts, "volatile"]}
        out.append(m)
    return out


def unmount(target: str) -> None:
    try:
        from ketch.runtime import mount as rtmount
    except ImportError:
        rtmount = None
    if rtmount is not None and hasattr(rtmount, "unmount_all"):
        rtmount.unmount_all(target)
        return
    libc = _libc()
    while is_mounted(target):
        if libc.umount2(os.path.realpath(target).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise KetchError(f"unmount {target!r}: {os.strerror(err)}")
