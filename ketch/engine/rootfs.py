"""Mounting a container's prepared rootfs on <bundle>/rootfs, and unmounting it.

The image store describes the mounts (overlay on the image's chain, or a
bind of a copied directory); the runtime's mount module performs them
(ketch.runtime.mount: all or nothing, stacked mounts taken down too).
"""

from __future__ import annotations

import os


def is_mounted(target: str) -> bool:
    target = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == target for line in f)


def mount(mounts: list[dict], target: str) -> None:
    from ketch.runtime import mount as rtmount
    os.makedirs(target, exist_ok=True)
    if is_mounted(target):
        return
    rtmount.mount_all(mounts, target)


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
    from ketch.runtime import mount as rtmount
    rtmount.unmount_all(target)
