"""`--user` resolution in the image's own /etc/passwd and /etc/group, and safe paths.

The rootfs is image content, so its symlinks are resolved as if the
rootfs were `/` (`in_root`): a hostile /etc/passwd -> /etc/shadow-of-the-
host link cannot make ketch read or create anything outside it.
"""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument
from ketch.oci.record import Factory, Record


class User(Record):
    uid: int = 0
    gid: int = 0
    home: str = "/"
    additional: list[int] = Factory(list)

    def spec(self) -> dict:
        out: dict = {"uid": self.uid, "gid": self.gid}
        if self.additional:
            out["additionalGids"] = self.additional
        return out


def in_root(root: str, path: str, hops: int = 40) -> str:
    """Host path of `path` inside `root`, following symlinks without leaving root."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        if os.path.islink(host):
            hops -= 1
            if hops < 0:
                raise InvalidArgument(f"too many levels of symbolic links in {path!r}")
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _read_db(root: str, name: str) -> list[list[str]]:
    try:
        with open(in_root(root, f"/etc/{name}"), errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip()
                    and not line.startswith("#")]
    except OSError:
        return []


def resolve(root: str, user: str, group_add: list[str] | None = None) -> User:
    """'', 'name', 'uid', 'name:group', 'uid:gid' -> uid, gid, home, supplementary gids."""
    name, _, group = (user or "0").partition(":")
    passwd = _read_db(root, "passwd")
    groups = _read_db(root, "group")
    out = User()
    entry = next((p for p in passwd if len(p) >= 6 and (p[0] == name or
                  (name.isdigit() and p[2] == name))), None)
    if entry:
        out.uid, out.gid, out.home = int(entry[2]), int(entry[3]), entry[5] or "/"
        login = entry[0]
    elif name.isdigit():
        out.uid, out.gid, login = int(name), int(name) if not group else 0, ""
        out.gid = 0
    else:
        raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        out.gid = _group_id(groups, group)
    elif login:
        # Supplementary groups the user is listed in, as a login would have.
        out.additional = [int(g[2]) for g in groups
                          if len(g) >= 4 and login in g[3].split(",") and g[2].isdigit()]
    for g in group_add or []:
        gid = _group_id(groups, g)
        if gid not in out.additional:
            out.additional.append(gid)
    return out


def _group_id(groups: list[list[str]], group: str) -> int:
    if group.isdigit():
        return int(group)
    for g in groups:
        if len(g) >= 3 and g[0] == group:
            return int(g[2])
    raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
