"""CreateOptions: what `ketch run`/`create` (and later the API and compose) ask for.

Front ends fill a CreateOptions from their own syntax; everything here
validates and normalises values Docker-style (sizes like "512m", "1.5"
CPUs, "nofile=1024:2048", "on-failure:3", "-v src:dst:ro", `--mount`
key=value lists) so bad input fails before anything is created.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ketch.errors import InvalidArgument
from ketch.oci.record import Factory, Record

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DUR_SCALE = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


class Mount(Record):
    """One filesystem mount requested by -v, --mount or --tmpfs."""

    type: str            # bind | volume | tmpfs
    target: str
    source: str = ""     # host path (bind) or volume name (volume)
    readonly: bool = False
    options: list[str] = Factory(list)   # tmpfs size=, mode=; bind propagation


class CreateOptions(Record):
    image: str = ""
    command: list[str] = Factory(list)
    entrypoint: list[str] | None = None
    name: str = ""
    env: list[str] = Factory(list)
    labels: dict[str, str] = Factory(dict)
    mounts: list[Mount] = Factory(list)
    workdir: str = ""
    user: str = ""
    group_add: list[str] = Factory(list)
    hostname: str = ""
    init: bool = False
    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    restart: str = "no"
    restart_max: int = 0
    stop_signal: str = ""
    stop_timeout: int | None = None
    health: dict | None = None          # Docker's HealthConfig: Test, Interval, ... (ns)
    no_healthcheck: bool = False
    cpus: float = 0.0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    memory: int = 0
    memory_swap: int = 0                # -1 = unlimited
    memory_reservation: int = 0
    pids_limit: int = 0
    ulimits: dict[str, tuple[int, int]] = Factory(dict)
    read_only: bool = False
    no_new_privileges: bool = False
    seccomp: str = ""                   # "" default, "unconfined", or a file path
    cap_add: list[str] = Factory(list)
    cap_drop: list[str] = Factory(list)
    privileged: bool = False
    devices: list[str] = Factory(list)
    sysctls: dict[str, str] = Factory(dict)
    shm_size: int = 64 << 20
    oom_score_adj: int = 0
    network: str = ""
    # Passed to networks.attach: ports, publish_all, exposed, dns, dns_search,
    # dns_options, extra_hosts, ip, mac, aliases (see ketch/engine/networks.py).
    net_opts: dict = Factory(dict)
    runtime: str = ""
    log_driver: str = "json-file"
    log_opts: dict[str, str] = Factory(dict)

    def to_json(self) -> dict:
        return self.as_dict()

    @classmethod
    def from_json(cls, data: dict) -> CreateOptions:
        data = dict(data)
        data["mounts"] = [Mount(**m) for m in data.get("mounts", [])]
        data["ulimits"] = {k: tuple(v) for k, v in data.get("ulimits", {}).items()}
        return cls(**{k: v for k, v in data.items() if k in cls._fields})


def size_in_bytes(value: str) -> int | None:
    """Docker's RAMInBytes: "512m", "1g", "1024" (bytes), "1.5g", "4GiB"; None if not a size."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])i?)?b?\s*", str(value).lower())
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""]) if m else None


def parse_bytes(value: str, flag: str = "--memory") -> int:
    size = size_in_bytes(value)
    if size is None:
        raise InvalidArgument(f"invalid size: '{value}' for {flag}")
    return size


def parse_memory_swap(value: str) -> int:
    return -1 if str(value).strip() == "-1" else parse_bytes(value, "--memory-swap")


def parse_cpus(value: str) -> float:
    try:
        cpus = float(value)
    except ValueError:
        raise InvalidArgument(f"invalid argument \"{value}\" for \"--cpus\" flag") from None
    if cpus < 0 or cpus > (os.cpu_count() or 1):
        raise InvalidArgument(
            f"range of CPUs is from 0.01 to {os.cpu_count() or 1}.00, as there are only "
            f"{os.cpu_count() or 1} CPUs available")
    return cpus


def parse_duration(value: str, flag: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds."""
    text = str(value).strip()
    if text == "0":
        return 0
    parts = _DUR.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise InvalidArgument(f"invalid argument \"{value}\" for \"{flag}\" flag: "
                              f"time: invalid duration \"{value}\"")
    return int(sum(float(n) * _DUR_SCALE[u] for n, u in parts) * 1e9)


def parse_ulimit(value: str) -> tuple[str, tuple[int, int]]:
    m = re.fullmatch(r"([a-z]+)=(-?\d+)(?::(-?\d+))?", value)
    if not m:
        raise InvalidArgument(f"invalid ulimit argument: {value}")
    soft = int(m.group(2))
    hard = int(m.group(3)) if m.group(3) is not None else soft
    if soft > hard:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard "
                              f"limit: {soft} > {hard}")
    return m.group(1), (soft, hard)


def parse_restart(value: str) -> tuple[str, int]:
    name, _, count = value.partition(":")
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy '{value}'")
    if count:
        if name != "on-failure" or not count.isdigit():
            raise InvalidArgument(f"invalid restart policy '{value}': maximum retry count "
                                  "can only be used with 'on-failure'")
        return name, int(count)
    return name, 0


def parse_volume(spec: str) -> Mount:
    """-v [SRC:]DST[:OPTS]: a host path (absolute) is a bind, anything else a named volume."""
    parts = spec.split(":")
    if len(parts) == 1:
        return Mount("volume", _abs_target(parts[0], spec))
    if len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    bad = [o for o in opts if o not in ("ro", "rw", "z", "Z", "private", "rprivate", "shared",
                                         "rshared", "slave", "rslave", "nocopy")]
    if bad:
        raise InvalidArgument(f"invalid mode: {bad[0]} in volume specification '{spec}'")
    kind = "bind" if src.startswith("/") or src.startswith(".") else "volume"
    if kind == "bind":
        src = str(Path(src).absolute())
    elif not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", src):
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    return Mount(kind, _abs_target(dst, spec), src, "ro" in opts,
                 [o for o in opts if o not in ("ro", "rw", "z", "Z", "nocopy")])


def parse_mount(spec: str) -> Mount:
    """--mount type=bind|volume|tmpfs,source=..,target=..,readonly,tmpfs-size=.."""
    kv: dict[str, str] = {}
    for item in spec.split(","):
        k, eq, v = item.partition("=")
        kv[k.strip()] = v if eq else "true"
    kind = kv.pop("type", "volume")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                              f"mount type unknown: \"{kind}\"")
    target = kv.pop("target", None) or kv.pop("destination", None) or kv.pop("dst", None)
    if not target:
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                              "target is required")
    source = kv.pop("source", None) or kv.pop("src", None) or ""
    ro = kv.pop("readonly", kv.pop("ro", "false")).lower() in ("true", "1", "")
    opts = []
    if kind == "tmpfs":
        if "tmpfs-size" in kv:
            opts.append(f"size={parse_bytes(kv.pop('tmpfs-size'), '--mount tmpfs-size')}")
        if "tmpfs-mode" in kv:
            opts.append(f"mode={kv.pop('tmpfs-mode')}")
    elif kind == "bind":
        if not source:
            raise InvalidArgument("invalid mount config for type \"bind\": field Source "
                                  "must not be empty")
        source = str(Path(source).absolute())
        if not os.path.exists(source):
            raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path "
                                  f"does not exist: {source}")
        if "bind-propagation" in kv:
            opts.append(kv.pop("bind-propagation"))
    kv.pop("volume-nocopy", None)
    if kv:
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                              f"unexpected key '{next(iter(kv))}'")
    return Mount(kind, _abs_target(target, spec), source, ro, opts)


def parse_tmpfs(spec: str) -> Mount:
    dst, _, opts = spec.partition(":")
    return Mount("tmpfs", _abs_target(dst, spec), "", False, opts.split(",") if opts else [])


def _abs_target(target: str, spec: str) -> str:
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{target}' mount path must be absolute "
                              f"(in '{spec}')")
    return os.path.normpath(target)


def read_env_file(path: str) -> list[str]:
    """Docker's --env-file: KEY=VALUE lines, '#' comments, a bare KEY copies the host's."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidArgument(f"open {path}: {exc.strerror}") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.extend(expand_env([line]))
    return out


def expand_env(items: list[str]) -> list[str]:
    """-e KEY=VALUE stays; -e KEY takes the host's value, or is dropped when unset."""
    out = []
    for item in items:
        if "=" in item:
            if item.startswith("="):
                raise InvalidArgument(f"invalid environment variable: {item}")
            out.append(item)
        elif item in os.environ:
            out.append(f"{item}={os.environ[item]}")
    return out


def parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid label: {item!r}")
        labels[k] = v
    return labels
