"""The OCI runtime config (config.json) of a container: image config + CreateOptions.

The defaults are Docker's: its capability set, masked and read-only /proc
paths, /dev/shm of 64 MiB, the device allow-list, hostname = short id, the
default seccomp profile, and cgroupsPath <cgroup parent>/<id>. User names
are resolved against the image's own /etc/passwd and /etc/group, so this
runs once the rootfs is mounted (at start, as Docker does).
"""

from __future__ import annotations

import json
import os

from ketch import paths
from ketch.engine import usermap
from ketch.engine.options import CreateOptions
from ketch.errors import InvalidArgument

DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
ALL_CAPS = DEFAULT_CAPS + [
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE", "CAP_AUDIT_CONTROL",
    "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
# Capability numbers, in kernel order (for reading the host's bounding set).
CAP_ORDER = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
             "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
             "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
             "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
             "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
             "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
             "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# Docker's default device cgroup rules: mknod anything, use only the safe nodes.
DEVICE_RULES = [("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"),
                ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"),
                ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
                ("c", 136, None, "rwm"), ("c", 10, 200, "rwm")]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The host's hard limits are low here; these are the defaults runc and Podman get.
DEFAULT_RLIMITS = {"nofile": (1024, 1024), "nproc": (4096, 4096)}
TINI = "/usr/bin/tini-static"


def image_section(image_config: dict) -> dict:
    """The `config` object of an OCI image config (or the dict itself if already inner)."""
    inner = image_config.get("config")
    return inner if isinstance(inner, dict) else image_config


def process_args(opts: CreateOptions, img: dict) -> list[str]:
    """Docker's rule: --entrypoint replaces ENTRYPOINT and drops the image's CMD."""
    if opts.entrypoint is not None:
        entry = opts.entrypoint
        cmd = opts.command
    else:
        entry = img.get("Entrypoint") or []
        cmd = opts.command or img.get("Cmd") or []
    args = list(entry) + list(cmd)
    if not args:
        raise InvalidArgument("no command specified")
    return args


def merge_env(image_env: list[str], extra: list[str]) -> list[str]:
    env: dict[str, str] = {}
    for item in [*image_env, *extra]:
        k, _, v = item.partition("=")
        env[k] = v
    return [f"{k}={v}" for k, v in env.items()]


def build(cid: str, opts: CreateOptions, image_config: dict, rootfs: str,
          mounts: list[dict], hostname: str, netns: str = "") -> dict:
    """The whole config.json; `mounts` are the container's resolved volume/bind/tmpfs mounts."""
    img = image_section(image_config)
    user = usermap.resolve(rootfs, opts.user or img.get("User") or "", opts.group_add)
    env = merge_env(img.get("Env") or [], opts.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    env = merge_env([f"HOSTNAME={hostname}"], env)
    if opts.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    args = process_args(opts, img)
    if opts.init:
        args = ["/sbin/docker-init", "--", *args]
    caps = _capabilities(opts)
    process = {
        "terminal": opts.tty, "user": user.spec(), "args": args, "env": env,
        "cwd": opts.workdir or img.get("WorkingDir") or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "rlimits": _rlimits(opts), "noNewPrivileges": opts.no_new_privileges,
    }
    if opts.oom_score_adj:
        process["oomScoreAdj"] = opts.oom_score_adj
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": _base_mounts(opts) + mounts + _init_mount(opts),
        "linux": _linux(cid, opts, caps, netns),
    }


def host_caps() -> list[str]:
    """ALL_CAPS limited to what this host's bounding set still has (a container can't gain more)."""
    try:
        with open("/proc/self/status") as f:
            bnd = int(next(ln for ln in f if ln.startswith("CapBnd:")).split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return list(ALL_CAPS)
    have = {"CAP_" + n for i, n in enumerate(CAP_ORDER) if bnd >> i & 1}
    return [c for c in ALL_CAPS if c in have]


def validate(opts: CreateOptions) -> None:
    """What can be checked before the container exists: caps, a seccomp file, devices, --init.

    So bad input fails `create` with nothing made, instead of failing `start` later.
    """
    caps = _capabilities(opts)
    if opts.seccomp and opts.seccomp != "unconfined":
        _seccomp(opts.seccomp, caps)
    for dev in opts.devices:
        _device(dev)
    _init_mount(opts)


def _capabilities(opts: CreateOptions) -> list[str]:
    if opts.privileged:
        return host_caps()
    norm = [c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
            for c in (*opts.cap_add, *opts.cap_drop)]
    for c in norm:
        if c != "CAP_ALL" and c not in ALL_CAPS:
            raise InvalidArgument(f'unknown capability: "{c}"')
    add, drop = norm[:len(opts.cap_add)], norm[len(opts.cap_add):]
    caps = host_caps() if "CAP_ALL" in add else list(DEFAULT_CAPS)
    caps = [c for c in caps if "CAP_ALL" not in drop and c not in drop]
    caps += [c for c in add if c != "CAP_ALL" and c not in caps]
    return caps


def _rlimits(opts: CreateOptions) -> list[dict]:
    limits = {**DEFAULT_RLIMITS, **opts.ulimits}
    return [{"type": f"RLIMIT_{k.upper()}", "soft": s, "hard": h}
            for k, (s, h) in sorted(limits.items())]


def _base_mounts(opts: CreateOptions) -> list[dict]:
    shm = f"size={opts.shm_size // 1024}k"
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if opts.privileged else "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime",
                     "rw" if opts.privileged else "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", shm]},
    ]


def _init_mount(opts: CreateOptions) -> list[dict]:
    if not opts.init:
        return []
    if not os.path.exists(TINI):
        raise InvalidArgument(f"--init needs {TINI} (Debian package tini), which is missing")
    return [{"destination": "/sbin/docker-init", "type": "bind", "source": TINI,
             "options": ["rbind", "ro", "nosuid", "nodev"]}]


def _linux(cid: str, opts: CreateOptions, caps: list[str], netns: str = "") -> dict:
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if netns:   # --network container:<x>: join that container's namespace
        namespaces.append({"type": "network", "path": netns})
    elif opts.network != "host":
        namespaces.append({"type": "network"})
    linux = {
        "cgroupsPath": f"/{paths.cgroup_parent()}/{cid}",
        "namespaces": namespaces,
        "resources": resources(opts),
        "sysctl": dict(opts.sysctls),
        "devices": [],
    }
    if not opts.privileged:
        linux["maskedPaths"] = list(MASKED)
        linux["readonlyPaths"] = list(READONLY)
        seccomp = _seccomp(opts.seccomp, caps)
        if seccomp:
            linux["seccomp"] = seccomp
    for dev in opts.devices:
        node, rule = _device(dev)
        linux["devices"].append(node)
        linux["resources"]["devices"].append(rule)
    return linux


def resources(opts: CreateOptions) -> dict:
    """linux.resources from the resource flags (also what `update` sends to the runtime)."""
    res: dict = {"devices": [{"allow": False, "access": "rwm"}]}
    if opts.privileged:
        res["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        for kind, major, minor, access in DEVICE_RULES:
            rule = {"allow": True, "type": kind, "access": access}
            if major is not None:
                rule["major"] = major
            if minor is not None:
                rule["minor"] = minor
            res["devices"].append(rule)
    mem: dict = {}
    if opts.memory:
        mem["limit"] = opts.memory
        # Docker: no --memory-swap means swap may be as large as memory again.
        mem["swap"] = opts.memory_swap or 2 * opts.memory
    if opts.memory_reservation:
        mem["reservation"] = opts.memory_reservation
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    if opts.cpus:
        cpu["period"], cpu["quota"] = 100000, int(opts.cpus * 100000)
    if opts.cpu_shares:
        cpu["shares"] = opts.cpu_shares
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if opts.pids_limit:
        res["pids"] = {"limit": opts.pids_limit}
    return res


def _seccomp(setting: str, caps: list[str]) -> dict | None:
    if setting == "unconfined":
        return None
    if setting:
        try:
            with open(setting) as f:
                return docker_profile_to_spec(json.load(f))
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise InvalidArgument(f"opening seccomp profile ({setting}) failed: {why}") from None
    try:
        from ketch.runtime import seccomp
    except ImportError:
        return None
    # Docker widens its default profile for the capabilities granted (e.g. SYS_ADMIN).
    return seccomp.default_profile(caps)


def docker_profile_to_spec(profile: dict) -> dict:
    """Docker's seccomp JSON (archMap, includes/excludes) -> runtime-spec linux.seccomp."""
    if "archMap" not in profile and "syscalls" in profile and "defaultAction" in profile:
        arches = profile.get("architectures") or ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                  "SCMP_ARCH_X32"]
    else:
        arches = []
        for entry in profile.get("archMap") or []:
            if entry.get("architecture") == "SCMP_ARCH_X86_64":
                arches = [entry["architecture"], *entry.get("subArchitectures", [])]
    if "defaultAction" not in profile:
        raise InvalidArgument("seccomp profile has no defaultAction")
    rules = []
    for rule in profile.get("syscalls") or []:
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if rule.get("includes") or rule.get("excludes"):
            continue   # capability/arch-conditional rules; the conservative choice is to skip
        entry = {"names": names, "action": rule["action"]}
        if rule.get("args"):
            entry["args"] = rule["args"]
        if "errnoRet" in rule:
            entry["errnoRet"] = rule["errnoRet"]
        rules.append(entry)
    spec = {"defaultAction": profile["defaultAction"], "architectures": arches,
            "syscalls": rules}
    if "defaultErrnoRet" in profile:
        spec["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return spec


def _device(spec: str) -> tuple[dict, dict]:
    parts = spec.split(":")
    host = parts[0]
    inner = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    access = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    try:
        st = os.stat(host)
    except OSError as exc:
        raise InvalidArgument(f"error gathering device information while adding custom "
                              f"device \"{host}\": {exc.strerror}") from None
    import stat as st_mod
    if st_mod.S_ISCHR(st.st_mode):
        kind = "c"
    elif st_mod.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"error gathering device information while adding custom "
                              f"device \"{host}\": not a device node")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    node = {"path": inner, "type": kind, "major": major, "minor": minor,
            "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0}
    return node, {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}


def write(bundle: str, config: dict) -> None:
    """config.json atomically (temp file, then rename)."""
    tmp = os.path.join(bundle, "config.json.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(config))   # dumps: the C encoder (json.dump iterates in Python)
    os.replace(tmp, os.path.join(bundle, "config.json"))


def copy_if_missing(src: str, dst: str) -> None:
    if not os.path.exists(dst):
        import shutil  # rarely needed: not worth its import on every start
        shutil.copyfile(src, dst)
