"""The OCI runtime-spec (1.2) config.json: loading, checking, and runc's default.

Plain dicts, not models: the container start path must not pay for a
modelling library's import, and config.json is read once. `check()` walks the
fields the runtime acts on and raises InvalidArgument with the field's path
(``linux.namespaces[2].type: unknown namespace type "foo"``), so bad input
fails before anything is created. Resource, capability and seccomp sections
are checked by their owners in ketch.runtime (this layer may not import them).
"""

from __future__ import annotations

from ketch.errors import InvalidArgument

VERSION = "1.2.0"
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
           "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
           "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK")
PROPAGATIONS = ("shared", "slave", "private", "unbindable",
                "rshared", "rslave", "rprivate", "runbindable")
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer",
         "poststart", "poststop")
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def load(path: str, parse=None) -> dict:
    """Read and parse config.json; one line naming the file on any error.

    `parse` replaces json.loads (the runtime passes one that avoids importing json).
    """
    if parse is None:
        import json
        parse = json.loads
    try:
        with open(path, "rb") as f:
            data = parse(f.read())
    except FileNotFoundError as exc:
        raise InvalidArgument(f"{path}: no such file (is the bundle right?)") from exc
    except OSError as exc:
        raise InvalidArgument(f"read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidArgument(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: must be a JSON object")
    return data


def _want(value, kind, field: str, required: bool = False):
    if value is None:
        if required:
            raise InvalidArgument(f"{field}: required")
        return value
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        name = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
                dict: "an object"}.get(kind, str(kind))
        raise InvalidArgument(f"{field}: must be {name}, not {value!r}")
    return value


def _abs(value, field: str, required: bool = True) -> None:
    _want(value, str, field, required)
    if value is not None and not value.startswith("/"):
        raise InvalidArgument(f"{field}: must be an absolute path, not {value!r}")


def check(spec: dict, need_process: bool = True) -> None:
    """Raise InvalidArgument on the first field that breaks the spec."""
    _want(spec.get("ociVersion"), str, "ociVersion", required=True)
    root = _want(spec.get("root"), dict, "root", required=True)
    _want(root.get("path"), str, "root.path", required=True)
    _want(root.get("readonly"), bool, "root.readonly")
    _want(spec.get("hostname"), str, "hostname")
    _want(spec.get("domainname"), str, "domainname")
    for key, value in (_want(spec.get("annotations"), dict, "annotations") or {}).items():
        _want(value, str, f"annotations.{key}")
    proc = spec.get("process")
    if proc is None and need_process:
        raise InvalidArgument("process: required to create a container")
    if proc is not None:
        check_process(proc)
    for i, m in enumerate(_want(spec.get("mounts"), list, "mounts") or []):
        _check_mount(m, f"mounts[{i}]")
    hooks = _want(spec.get("hooks"), dict, "hooks") or {}
    for kind, entries in hooks.items():
        if kind not in HOOKS:
            continue  # unknown hook kinds are ignored, as runc does
        for i, hook in enumerate(_want(entries, list, f"hooks.{kind}") or []):
            field = f"hooks.{kind}[{i}]"
            _want(hook, dict, field)
            _abs(hook.get("path"), f"{field}.path")
            _want(hook.get("args"), list, f"{field}.args")
            _want(hook.get("env"), list, f"{field}.env")
            timeout = _want(hook.get("timeout"), int, f"{field}.timeout")
            if timeout is not None and timeout <= 0:
                raise InvalidArgument(f"{field}.timeout: must be positive, not {timeout}")
    linux = _want(spec.get("linux"), dict, "linux")
    if linux is not None:
        check_linux(spec, linux)


def check_process(proc: dict, field: str = "process") -> None:
    _want(proc, dict, field)
    args = _want(proc.get("args"), list, f"{field}.args", required=True)
    if not args or not all(isinstance(a, str) for a in args):
        raise InvalidArgument(f"{field}.args: must be a non-empty list of strings")
    _abs(proc.get("cwd"), f"{field}.cwd")
    for i, e in enumerate(_want(proc.get("env"), list, f"{field}.env") or []):
        if not isinstance(e, str) or "=" not in e:
            raise InvalidArgument(f"{field}.env[{i}]: must be KEY=value, not {e!r}")
    _want(proc.get("terminal"), bool, f"{field}.terminal")
    _want(proc.get("noNewPrivileges"), bool, f"{field}.noNewPrivileges")
    user = _want(proc.get("user"), dict, f"{field}.user") or {}
    for key in ("uid", "gid", "umask"):
        v = _want(user.get(key), int, f"{field}.user.{key}")
        if v is not None and v < 0:
            raise InvalidArgument(f"{field}.user.{key}: must not be negative")
    for gid in _want(user.get("additionalGids"), list, f"{field}.user.additionalGids") or []:
        _want(gid, int, f"{field}.user.additionalGids[]")
    oom = _want(proc.get("oomScoreAdj"), int, f"{field}.oomScoreAdj")
    if oom is not None and not -1000 <= oom <= 1000:
        raise InvalidArgument(f"{field}.oomScoreAdj: must be in -1000..1000, not {oom}")
    seen = set()
    for i, rl in enumerate(_want(proc.get("rlimits"), list, f"{field}.rlimits") or []):
        f = f"{field}.rlimits[{i}]"
        _want(rl, dict, f)
        kind = _want(rl.get("type"), str, f"{f}.type", required=True)
        if kind not in RLIMITS:
            raise InvalidArgument(f"{f}.type: unknown rlimit {kind!r}")
        if kind in seen:
            raise InvalidArgument(f"{f}.type: {kind} given twice")
        seen.add(kind)
        soft = _want(rl.get("soft"), int, f"{f}.soft", required=True)
        hard = _want(rl.get("hard"), int, f"{f}.hard", required=True)
        if soft > hard:
            raise InvalidArgument(f"{f}: soft limit {soft} is above hard limit {hard}")
    caps = _want(proc.get("capabilities"), dict, f"{field}.capabilities") or {}
    for key, names in caps.items():
        _want(names, list, f"{field}.capabilities.{key}")


def _check_mount(m, field: str) -> None:
    _want(m, dict, field)
    _abs(m.get("destination"), f"{field}.destination")
    _want(m.get("type"), str, f"{field}.type")
    _want(m.get("source"), str, f"{field}.source")
    for opt in _want(m.get("options"), list, f"{field}.options") or []:
        _want(opt, str, f"{field}.options[]")


def check_linux(spec: dict, linux: dict) -> None:
    types = set()
    for i, ns in enumerate(_want(linux.get("namespaces"), list, "linux.namespaces") or []):
        f = f"linux.namespaces[{i}]"
        _want(ns, dict, f)
        kind = _want(ns.get("type"), str, f"{f}.type", required=True)
        if kind not in NAMESPACES:
            raise InvalidArgument(f"{f}.type: unknown namespace type {kind!r}")
        if kind in types:
            raise InvalidArgument(f"{f}.type: duplicate namespace {kind!r}")
        types.add(kind)
        if ns.get("path") is not None:
            _abs(ns.get("path"), f"{f}.path")
    for key in ("uidMappings", "gidMappings"):
        for i, m in enumerate(_want(linux.get(key), list, f"linux.{key}") or []):
            for k in ("containerID", "hostID", "size"):
                _want((m or {}).get(k), int, f"linux.{key}[{i}].{k}", required=True)
    if (linux.get("uidMappings") or linux.get("gidMappings")) and "user" not in types:
        raise InvalidArgument("linux.uidMappings: user mappings need a user namespace")
    for i, d in enumerate(_want(linux.get("devices"), list, "linux.devices") or []):
        f = f"linux.devices[{i}]"
        _want(d, dict, f)
        _abs(d.get("path"), f"{f}.path")
        kind = d.get("type")
        if kind not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"{f}.type: must be one of c, b, u, p, not {kind!r}")
        if kind != "p":
            _want(d.get("major"), int, f"{f}.major", required=True)
            _want(d.get("minor"), int, f"{f}.minor", required=True)
    for key in ("maskedPaths", "readonlyPaths"):
        for p in _want(linux.get(key), list, f"linux.{key}") or []:
            _abs(p, f"linux.{key}[]")
    prop = _want(linux.get("rootfsPropagation"), str, "linux.rootfsPropagation")
    if prop and prop not in PROPAGATIONS:
        raise InvalidArgument(f"linux.rootfsPropagation: unknown propagation {prop!r}")
    _want(linux.get("cgroupsPath"), str, "linux.cgroupsPath")
    _want(linux.get("resources"), dict, "linux.resources")
    for key, value in (_want(linux.get("sysctl"), dict, "linux.sysctl") or {}).items():
        _want(value, str, f"linux.sysctl.{key}")
        _check_sysctl(key, types, linux)
    if (spec.get("hostname") or spec.get("domainname")) and "uts" not in types:
        raise InvalidArgument("hostname: setting it needs a uts namespace (linux.namespaces)")


def _check_sysctl(key: str, types: set, linux: dict) -> None:
    """runc's rule: a sysctl must belong to a namespace the container owns."""
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        need = "ipc"
    elif key.startswith("net."):
        need = "network"
    elif key in ("kernel.hostname", "kernel.domainname"):
        need = "uts"
    else:
        raise InvalidArgument(f"linux.sysctl: {key!r} is not namespaced; refusing to set it")
    if need not in types:
        raise InvalidArgument(f"linux.sysctl: {key!r} needs a {need} namespace")


def namespaces(spec: dict) -> dict[str, str | None]:
    """type -> path (None for a new namespace)."""
    return {ns["type"]: ns.get("path") or None
            for ns in (spec.get("linux") or {}).get("namespaces") or []}


def default_spec(rootless: bool = False) -> dict:
    """runc's `spec` template: busybox-friendly `sh` with a terminal, minimal caps."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec = {
        "ociVersion": VERSION,
        "process": {
            "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ketch",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                 "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        linux = spec["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
        del linux["resources"]
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys/fs/cgroup"]
        for m in spec["mounts"]:
            if m["destination"] == "/sys":
                m.update(type="none", source="/sys",
                         options=["rbind", "nosuid", "noexec", "nodev", "ro"])
            if m["destination"] == "/dev/pts":
                m["options"].remove("gid=5")
    return spec
