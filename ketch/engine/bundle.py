"""The bundle directory of a container, apart from config.json (engine/spec.py).

<root>/containers/<id>/ holds the rootfs mount point, the container's own
/etc/hostname, /etc/hosts and /etc/resolv.conf (bind-mounted; the network
attach rewrites them in place), the json-file log and the monitor's winsz fifo. Also here: the
runtime-spec mounts that -v/--mount/--tmpfs ask for.
"""

from __future__ import annotations

import os
from pathlib import Path

from ketch import paths
from ketch.engine.containers import Container


def bundle_dir(cid: str) -> Path:
    return paths.root() / "containers" / cid


def log_file(cid: str) -> str:
    """The json-file log, named as Docker names it (`<id>-json.log`)."""
    return str(bundle_dir(cid) / f"{cid}-json.log")


def mounts(c: Container) -> list[dict]:
    """Runtime-spec mounts for -v/--mount/--tmpfs, plus /etc/hosts & co."""
    from ketch.engine import volumes
    out = []
    b = bundle_dir(c.id)
    for name in ("hostname", "hosts", "resolv.conf"):
        out.append({"destination": f"/etc/{name}", "type": "bind", "source": str(b / name),
                    "options": ["rbind", "rprivate"]})
    for m in c.options.mounts:
        if m.type == "tmpfs":
            opts = ["nosuid", "nodev", "noexec", *m.options]
            out.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                        "options": opts + (["ro"] if m.readonly else [])})
            continue
        if m.type == "volume":
            src = str(volumes.data_dir(m.source))
        else:
            src = m.source
            if not os.path.exists(src):
                os.makedirs(src, exist_ok=True)   # Docker's -v creates a missing host dir
        prop = next((o for o in m.options if "shared" in o or "slave" in o or "private" in o),
                    "rprivate")
        out.append({"destination": m.target, "type": "bind", "source": src,
                    "options": ["rbind", prop] + (["ro"] if m.readonly else [])})
    return out


def etc_files(c: Container, hostname: str) -> None:
    b = bundle_dir(c.id)
    (b / "hostname").write_text(hostname + "\n")
    hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
             f"127.0.1.1\t{hostname}\n")
    (b / "hosts").write_text(hosts)
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    (b / "resolv.conf").write_text(resolv)


def hostname(c: Container) -> str:
    if c.options.hostname:
        return c.options.hostname
    if c.options.network == "host":
        return os.uname().nodename
    return c.id[:12]
