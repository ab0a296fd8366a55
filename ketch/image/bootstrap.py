"""Base images with no registry: busybox from the host's busybox-static, and
Debian from the host's configured archive through mmdebstrap.

Both produce ordinary OCI images (one gzip layer, a config with Cmd and Env
PATH, an OCI manifest) in the content store, then register them like any
pulled image. The busybox image is reproducible: its timestamps come from
the busybox binary, so bootstrapping twice gives the same image ID.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from ketch.errors import FailedPrecondition, InvalidArgument
from ketch.image.store import ImageRecord, ImageStore
from ketch.oci import image_spec as spec

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\nnogroup:x:65534:\n"
BUSYBOX_DIRS = ("bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "tmp", "usr",
                "usr/bin", "usr/sbin", "var", "var/spool", "var/www")


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def find_busybox() -> str:
    for cand in BUSYBOX_CANDIDATES:
        if os.path.isfile(cand):
            return cand
    raise FailedPrecondition("bootstrap busybox: no busybox binary on the host "
                             "(install busybox-static)")


def busybox_layer(binary: str) -> tuple[bytes, float]:
    """The uncompressed layer tar and its timestamp."""
    mtime = float(int(os.stat(binary).st_mtime))
    applets = subprocess.run([binary, "--list-full"], capture_output=True, text=True,
                             check=False).stdout.split()
    if not applets:
        raise FailedPrecondition(f"bootstrap busybox: {binary} --list-full listed no applets "
                                 "(is it busybox-static?)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = ""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.linkname = kind, mode, mtime, link
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data else None)

        for d in BUSYBOX_DIRS:
            add(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else (0o700 if d == "root" else 0o755))
        add("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, GROUP.encode())
        with open(binary, "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for path in sorted(set(applets)):
            if path != "bin/busybox":
                depth = path.count("/")
                add(path, tarfile.SYMTYPE, 0o777, link="../" * depth + "bin/busybox")
    return buf.getvalue(), mtime


def store_single_layer(store: ImageStore, layer_tar: bytes | Path, config: dict,
                       names: list[str], created: str) -> ImageRecord:
    """Write a one-layer image (gzip layer, config, OCI manifest) and register it."""
    if isinstance(layer_tar, Path):
        diff_id, blob, blob_size = _gzip_file(store, layer_tar)
    else:
        diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
        gz = gzip.compress(layer_tar, compresslevel=1, mtime=0)
        blob, blob_size = store.content.put(gz), len(gz)
    config = dict(config)
    config.setdefault("created", created)
    config.setdefault("architecture", spec.host_platform()["architecture"])
    config.setdefault("os", "linux")
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    config.setdefault("history", [{"created": created, "created_by": "ketch bootstrap"}])
    config_raw = spec.canonical(config)
    cfg = store.content.put(config_raw)
    manifest = {"schemaVersion": 2, "mediaType": spec.OCI_MANIFEST,
                "config": spec.descriptor(spec.OCI_CONFIG, cfg, len(config_raw)),
                "layers": [spec.descriptor(spec.OCI_LAYER_GZIP, blob, blob_size)]}
    mdigest = store.content.put(spec.canonical(manifest))
    return store.add_manifest(mdigest, names)


def _gzip_file(store: ImageStore, tar_path: Path) -> tuple[str, str, int]:
    h = hashlib.sha256()
    with tempfile.TemporaryFile() as tmp:
        with open(tar_path, "rb") as src, gzip.GzipFile(fileobj=tmp, mode="wb",
                                                          compresslevel=1, mtime=0) as gz:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                gz.write(chunk)
        size = tmp.tell()
        tmp.seek(0)
        with store.content.writer(f"bootstrap-{h.hexdigest()}") as w:
            w.truncate()
            while chunk := tmp.read(1 << 20):
                w.write(chunk)
            blob = w.commit()
    return "sha256:" + h.hexdigest(), blob, size


def bootstrap_busybox(store: ImageStore, name: str = "busybox:latest") -> ImageRecord:
    binary = find_busybox()
    tar, mtime = busybox_layer(binary)
    created = _rfc3339(mtime)
    config = {"config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
              "history": [{"created": created,
                           "created_by": f"ketch bootstrap busybox (from {binary})"}]}
    return store_single_layer(store, tar, config, [name], created)


def bootstrap_debian(store: ImageStore, suite: str = "bookworm", name: str | None = None,
                     include: list[str] = (), mirror: str | None = None) -> ImageRecord:
    """mmdebstrap --variant=minbase from the host's apt sources into a one-layer image."""
    tool = shutil.which("mmdebstrap")
    if tool is None:
        raise FailedPrecondition("bootstrap debian: mmdebstrap is not installed")
    if not suite.replace("-", "").isalnum():
        raise InvalidArgument(f"bootstrap debian: bad suite {suite!r}")
    with tempfile.TemporaryDirectory(prefix="ketch-debootstrap-") as tmp:
        out = Path(tmp) / "rootfs.tar"
        cmd = [tool, "--variant=minbase", "--format=tar", "--quiet"]
        if include:
            cmd.append("--include=" + ",".join(include))
        cmd += [suite, str(out)]
        if mirror:
            cmd.append(mirror)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            raise FailedPrecondition(f"bootstrap debian:{suite}: mmdebstrap: {tail}")
        created = _rfc3339(time.time())
        config = {"config": {"Env": [PATH_ENV], "Cmd": ["bash"]},
                  "history": [{"created": created, "created_by":
                               f"ketch bootstrap debian:{suite} (mmdebstrap --variant=minbase"
                               + (f" --include={','.join(include)}" if include else "") + ")"}]}
        return store_single_layer(store, out, config, [name or f"debian:{suite}"], created)
