"""Docker's views of images: `images` rows, `image inspect` JSON, `history` rows.

Shapes follow the Docker CLI/API (field names, "<none>", "<missing>"),
so `--format` templates written for Docker work unchanged.
"""

from __future__ import annotations

import fnmatch
import re
import time
from datetime import date

from ketch.errors import InvalidArgument
from ketch.oci import reference as _ref

TYPE_CHECKING = False  # typing costs a listing ~4 ms
if TYPE_CHECKING:
    from typing import Any

    from ketch.image.store import ImageRecord, ImageStore

_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$")
_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
                "Healthcheck", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild",
                "Labels", "StopSignal", "Shell")
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def parse_time(value: str | None) -> float:
    """RFC 3339 (with nanoseconds and offsets) -> epoch seconds; 0 if absent or odd."""
    m = _TIME.match(value or "")
    if not m:
        return 0.0
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:   # calendar.timegm's arithmetic, without importing calendar (and locale)
        days = date(int(y), int(mo), 1).toordinal() - _EPOCH_DAY + int(d) - 1
    except ValueError:   # month 13, year 0
        return 0.0
    t = ((days * 24 + int(h)) * 60 + int(mi)) * 60 + int(s) + float(frac or 0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[-2:]) * 60)
    return t


def docker_time(ts: float) -> str:
    """Docker's CreatedAt: "2023-07-18 23:19:33 +0000 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(ts))


def docker_inspect(store: ImageStore, rec: ImageRecord) -> dict[str, Any]:
    cfg = rec.config
    inner = cfg.get("config") or {}
    parents = store.parents(rec.top_chain_id)
    lowers = ":".join(str(store.snap.fs(k)) for k in parents)
    out: dict[str, Any] = {
        "Id": rec.id,
        "RepoTags": rec.repo_tags,
        "RepoDigests": rec.repo_digests,
        "Parent": store.parent_of(rec.id) or "",
        "Comment": _comment(cfg),
        "Created": rec.created or "0001-01-01T00:00:00Z",
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": {k: inner.get(k, _empty(k)) for k in _CONFIG_KEYS},
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Size": rec.size,
        "GraphDriver": {"Name": store.snap.name, "Data": {"LowerDir": lowers} if lowers else {}},
        "RootFS": {"Type": "layers", "Layers": cfg["rootfs"]["diff_ids"]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
    if cfg.get("variant"):
        out["Variant"] = cfg["variant"]
    out["Descriptor"] = {"mediaType": rec.manifest_media_type, "digest": rec.manifest_digest}
    return out


def _empty(key: str) -> Any:
    if key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        return False
    if key in ("Hostname", "Domainname", "User", "Image", "WorkingDir"):
        return ""
    return None


def _comment(cfg: dict) -> str:
    hist = cfg.get("history") or []
    return (hist[-1].get("comment", "") if hist else "") or ""


def history(rec: ImageRecord) -> list[dict[str, Any]]:
    """`docker history` rows, newest first; sizes from the layer snapshots."""
    hist = rec.config.get("history") or [{} for _ in rec.layers]
    sizes = [ly.get("size", 0) for ly in rec.layers]
    rows, li = [], 0
    for h in hist:
        empty = bool(h.get("empty_layer"))
        size = 0 if empty or li >= len(sizes) else sizes[li]
        if not empty:
            li += 1
        ts = parse_time(h.get("created"))
        rows.append({"ID": "<missing>", "CreatedAt": docker_time(ts), "Created": ts,
                     "CreatedBy": h.get("created_by", ""), "Size": size,
                     "Comment": h.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["ID"] = rec.id
    return rows


def parse_filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or key not in ("dangling", "reference", "label", "before", "since"):
            raise InvalidArgument(f"invalid filter {v!r} (want dangling=, reference=, "
                                  f"label=, before=, since=)")
        if key == "dangling" and val.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={val}'")
        out.setdefault(key, []).append(val)
    return out


def _match_label(labels: dict, want: str) -> bool:
    k, sep, v = want.partition("=")
    return k in labels and (not sep or labels[k] == v)


def _match_ref(tag_full: str, pattern: str) -> bool:
    ref = _ref.parse(tag_full)
    names = [ref.familiar(), ref.familiar_name(), str(ref), ref.name]
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


def rows(store: ImageStore, show_all: bool = False,
         filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """`docker images` rows: one per tag, `<none>` for untagged, newest first."""
    filters = filters or {}
    images = store.summaries()
    parents = store.parent_ids()
    pivots = {k: store.resolve(v[-1]) for k, v in filters.items() if k in ("before", "since")}
    out = []
    for rec in images:
        created = parse_time(rec.created)
        dangling = not rec.repo_tags
        if dangling and rec.id in parents and not show_all:
            continue  # an intermediate image: shown with -a only
        if "dangling" in filters and dangling != (filters["dangling"][-1].lower() in ("true", "1")):
            continue
        labels = (rec.config.get("config") or {}).get("Labels") or {}
        if any(not _match_label(labels, w) for w in filters.get("label", [])):
            continue
        if "before" in pivots and not created < parse_time(pivots["before"].created):
            continue
        if "since" in pivots and not created > parse_time(pivots["since"].created):
            continue
        digests = {d.rsplit("@", 1)[0]: d.rsplit("@", 1)[1] for d in rec.repo_digests}
        if rec.repo_tags:
            names = [tuple(t.rsplit(":", 1)) for t in rec.repo_tags]
        else:  # pulled by digest only: Docker shows the repository, tag <none>
            names = [(r, "<none>") for r in digests] or [("<none>", "<none>")]
        if "reference" in filters:
            names = [(r, t) for r, t in names if r != "<none>" and any(
                _match_ref(r if t == "<none>" else f"{r}:{t}", p) for p in filters["reference"])]
        for repo, t in names:
            out.append(_row(rec, repo, t, digests.get(repo, "<none>"), created))
    return out


def _row(rec: ImageRecord, repo: str, tag: str, dig: str, created: float) -> dict[str, Any]:
    """Raw values; the CLI turns them into Docker's strings (sizes, ages)."""
    return {"Repository": repo, "Tag": tag, "ID": rec.id, "Digest": dig, "Created": created,
            "Size": rec.size, "Labels": (rec.config.get("config") or {}).get("Labels") or {}}
