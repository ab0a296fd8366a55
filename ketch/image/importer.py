"""`import` (a rootfs tar becomes a one-layer image) and Dockerfile-style
`--change` instructions, which `commit` applies too.

The tar is untrusted like any layer: it is stored as a blob, then unpacked
by the safe unpacker into a layer snapshot; its diff ID comes from that pass.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import IO, Any

from ketch.errors import InvalidArgument
from ketch.image import gc
from ketch.image.store import ImageRecord, ImageStore
from ketch.oci import image_spec as spec

_CHUNK = 1 << 20
CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME",
           "WORKDIR", "STOPSIGNAL")


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _exec_form(rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            val = json.loads(rest)
        except ValueError:
            val = None
        if isinstance(val, list) and all(isinstance(v, str) for v in val):
            return val
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, what: str) -> dict[str, str]:
    words = shlex.split(rest)
    if len(words) >= 1 and "=" not in words[0]:
        if what == "ENV" and len(words) >= 2:
            return {words[0]: rest.split(None, 1)[1]}
        raise InvalidArgument(f"{what} {rest!r}: want KEY=VALUE")
    out = {}
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise InvalidArgument(f"{what} {rest!r}: want KEY=VALUE")
        out[k] = v
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply `--change` lines to an image config's inner `config` dict (in place)."""
    for line in changes:
        word, _, rest = line.strip().partition(" ")
        op, rest = word.upper(), rest.strip()
        if op not in CHANGES:
            raise InvalidArgument(f"{line!r} is not a valid change command")
        if op in ("CMD", "ENTRYPOINT"):
            config["Cmd" if op == "CMD" else "Entrypoint"] = _exec_form(rest)
        elif op == "ENV":
            env = [e for e in config.get("Env") or []]
            for k, v in _pairs(rest, "ENV").items():
                env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
            config["Env"] = env
        elif op == "LABEL":
            config["Labels"] = dict(config.get("Labels") or {}) | _pairs(rest, "LABEL")
        elif op == "EXPOSE":
            ports = config.get("ExposedPorts") or {}
            for p in rest.split():
                num, _, proto = p.partition("/")
                if not num.replace("-", "").isdigit():
                    raise InvalidArgument(f"EXPOSE {p!r}: invalid port")
                ports[f"{num}/{proto or 'tcp'}"] = {}
            config["ExposedPorts"] = ports
        elif op == "VOLUME":
            vols = config.get("Volumes") or {}
            paths = _exec_form(rest) if rest.startswith("[") else rest.split()
            vols.update({p: {} for p in paths if p not in ("/bin/sh", "-c")})
            config["Volumes"] = vols
        elif op == "ONBUILD":
            config["OnBuild"] = (config.get("OnBuild") or []) + [rest]
        else:
            config[{"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[op]] = rest
    return config


def create_image(store: ImageStore, base: ImageRecord | None, layer: tuple[str, str, int] | None,
                 inner: dict[str, Any], names: list[str], history: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> ImageRecord:
    """A new image = base's layers (+ one new layer blob (digest, media type, size))."""
    base_cfg = base.config if base else {}
    manifest_layers, diff_ids = [], list((base_cfg.get("rootfs") or {}).get("diff_ids", []))
    if base:
        for ly in base.layers:
            manifest_layers.append(spec.descriptor(ly["media_type"] or spec.OCI_LAYER_GZIP,
                                                   ly["blob"], ly["blob_size"] or 0))
    created = history.get("created") or now_rfc3339()
    if layer is not None:
        chain = store.ensure_layer(base.top_chain_id if base else None, layer[0], None)
        diff_ids.append(store.conn.execute("SELECT diff_id FROM snapshots WHERE key=?",
                                           (chain[7:],)).fetchone()[0])
        manifest_layers.append(spec.descriptor(layer[1], layer[0], layer[2]))
    else:
        history = dict(history, empty_layer=True)
    config = {"architecture": base_cfg.get("architecture") or spec.host_platform()["architecture"],
              "os": base_cfg.get("os") or "linux", "created": created, "config": inner,
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": list(base_cfg.get("history") or []) + [dict(history, created=created)]}
    config.update(extra or {})
    raw = spec.canonical(config)
    cfg = store.content.put(raw)
    manifest = {"schemaVersion": 2, "mediaType": spec.OCI_MANIFEST,
                "config": spec.descriptor(spec.OCI_CONFIG, cfg, len(raw)),
                "layers": manifest_layers}
    mdig = store.content.put(spec.canonical(manifest))
    rec = store.record_image(mdig, manifest, config, raw, names)
    if base:
        store.conn.execute("UPDATE images SET parent=? WHERE id=? AND parent IS NULL",
                           (base.id, rec.id))
    return rec


def store_stream(store: ImageStore, stream: IO[bytes], ref: str) -> tuple[str, str, int]:
    """Copy a tar (any compression) into the content store: (digest, media type, size)."""
    head = stream.read(4)
    with store.content.writer(ref) as w:
        w.truncate()
        w.write(head)
        while chunk := stream.read(_CHUNK):
            w.write(chunk)
        size = w.offset
        dig = w.commit()
    media = (spec.OCI_LAYER_GZIP if head[:2] == b"\x1f\x8b" else
             spec.OCI_LAYER_ZSTD if head == b"\x28\xb5\x2f\xfd" else spec.OCI_LAYER)
    return dig, media, size


def import_tar(store: ImageStore, stream: IO[bytes], source: str, name: str | None,
               changes: list[str], message: str = "", platform: str | None = None) -> ImageRecord:
    if name:
        from ketch.oci import reference

        reference.parse(name)  # a bad name fails before any work
    inner = apply_changes({}, changes)
    extra = {}
    if platform:
        os_, _, arch = platform.partition("/")
        if not os_ or not arch:
            raise InvalidArgument(f"invalid platform {platform!r} (want os/arch)")
        extra = {"os": os_, "architecture": arch.split("/")[0]}
    with gc.lease(store):
        layer = store_stream(store, stream, f"import-{time.time_ns()}")
        return create_image(store, None, layer, inner, [name] if name else [],
                            {"created_by": "", "comment": message or f"Imported from {source}"},
                            extra)
