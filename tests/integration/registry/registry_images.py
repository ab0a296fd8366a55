"""Test images written by Python as OCI image layouts, and put into a registry by skopeo.

`build_layout(dir, layers)` writes an OCI layout (oci-layout, index.json,
blobs/) whose image has one gzip layer per entry of `layers` (a dict of
path -> bytes, or None for a directory), busybox-static as /bin/busybox in
the first one when asked. `skopeo_push` copies it into a registry over
plain http. No pytest here, so bench/ can use it too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _put(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.split(":")[1]).write_bytes(data)
    return digest, len(data)


def layer_tar(files: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_files() -> dict[str, bytes | None]:
    return {"bin": None, "bin/busybox": BUSYBOX.read_bytes(), "etc": None,
            "etc/hostname": b"ketch-test\n"}


def build_layout(root: Path, layers: list[dict[str, bytes | None]], tag: str = "latest",
                 compresslevel: int = 6, platform: tuple[str, str] = ("linux", "amd64")) -> dict:
    """Write an OCI layout with one image; returns its manifest (with 'digest' added)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs, diff_ids = [], []
    for files in layers:
        raw = layer_tar(files)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, compresslevel=compresslevel, mtime=0)
        digest, size = _put(blobs, gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": digest, "size": size})
    config = {"architecture": platform[1], "os": platform[0],
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000)),
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/busybox", "sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
    cdigest, csize = _put(blobs, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cdigest, "size": csize},
                "layers": descs}
    mdata = json.dumps(manifest).encode()
    mdigest, msize = _put(blobs, mdata)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize,
                            "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (root / "index.json").write_text(json.dumps(index))
    return dict(manifest, digest=mdigest, config_digest=cdigest)


def skopeo_push(layout: Path, tag: str, dest: str, creds: tuple[str, str] | None = None,
                fmt: str | None = None) -> None:
    """skopeo copy oci:<layout>:<tag> docker://<dest> (plain http)."""
    if not shutil.which("skopeo"):
        raise FileNotFoundError("skopeo is not installed")
    cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if creds:
        cmd += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    if fmt:
        cmd += ["--format", fmt]
    cmd += [f"oci:{layout}:{tag}", f"docker://{dest}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
