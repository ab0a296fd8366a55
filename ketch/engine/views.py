"""Reports: containers rendered in Docker's shapes (`inspect` JSON, `ps` rows).

These are the documents the CLI prints and the REST API will serve; the
field names and value formats are Docker's (RFC 3339 times, "/name",
State.Status words, "Up 3 seconds" / "Exited (0) 2 minutes ago").
"""

from __future__ import annotations

import time

from ketch import paths
from ketch.engine import spec
from ketch.engine.bundle import log_file
from ketch.engine.containers import Container

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float) -> str:
    if not ts:
        return ZERO_TIME
    frac = f"{ts % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + frac + "Z"


def status_text(c: Container, now: float | None = None) -> str:
    from ketch.engine.humanize import human_duration
    now = now or time.time()
    if c.status == "running":
        health = f" ({c.health['Status']})" if c.health.get("Status") else ""
        return f"Up {human_duration(now - c.started_at)}{health}"
    if c.status == "paused":
        return f"Up {human_duration(now - c.started_at)} (Paused)"
    if c.status == "restarting":
        return f"Restarting ({c.exit_code}) {human_duration(now - c.finished_at)} ago"
    if c.status == "exited":
        return f"Exited ({c.exit_code}) {human_duration(now - c.finished_at)} ago"
    return {"created": "Created", "removing": "Removal In Progress", "dead": "Dead"}.get(
        c.status, c.status)


def command_text(c: Container) -> str:
    try:
        args = spec.process_args(c.options, spec.image_section(c.image_config))
    except Exception:  # noqa: BLE001 - a bad config still lists
        args = []
    return " ".join(args)


def ps_row(c: Container) -> dict:
    """Fields of `ps --format` (Docker's names)."""
    from ketch.engine.humanize import human_duration
    return {
        "ID": c.id[:12], "Image": c.image, "Command": command_text(c),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(c.created)),
        "RunningFor": human_duration(time.time() - c.created) + " ago",
        "Status": status_text(c), "State": c.status, "Ports": "", "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in c.options.labels.items()),
        "Mounts": ",".join(m.source or m.target for m in c.options.mounts),
        "Networks": c.options.network or "bridge", "Size": "",
    }


def inspect(c: Container, network_settings: dict | None = None) -> dict:
    o = c.options
    img = spec.image_section(c.image_config)
    try:
        args = spec.process_args(o, img)
    except Exception:  # noqa: BLE001
        args = []
    entry = o.entrypoint if o.entrypoint is not None else (img.get("Entrypoint") or None)
    cmd = o.command or (img.get("Cmd") if o.entrypoint is None else []) or None
    b = paths.root() / "containers" / c.id
    health = dict(c.health) if c.health else None
    state = {
        "Status": c.status, "Running": c.status in ("running", "paused"),
        "Paused": c.status == "paused", "Restarting": c.status == "restarting",
        "OOMKilled": c.oom_killed, "Dead": c.status == "dead", "Pid": c.pid,
        "ExitCode": c.exit_code, "Error": c.error, "StartedAt": rfc3339(c.started_at),
        "FinishedAt": rfc3339(c.finished_at),
    }
    if health:
        state["Health"] = health
    return {
        "Id": c.id, "Created": rfc3339(c.created), "Path": args[0] if args else "",
        "Args": args[1:], "State": state, "Image": c.image_id,
        "ResolvConfPath": str(b / "resolv.conf"), "HostnamePath": str(b / "hostname"),
        "HostsPath": str(b / "hosts"), "LogPath": log_file(c.id),
        "Name": "/" + c.name, "RestartCount": c.restart_count, "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "Binds": [f"{m.source}:{m.target}" + (":ro" if m.readonly else "")
                      for m in o.mounts if m.type != "tmpfs"] or None,
            "NetworkMode": o.network or "bridge", "AutoRemove": o.auto_remove,
            "RestartPolicy": {"Name": o.restart, "MaximumRetryCount": o.restart_max},
            "LogConfig": {"Type": o.log_driver, "Config": o.log_opts},
            "Privileged": o.privileged, "ReadonlyRootfs": o.read_only,
            "CapAdd": o.cap_add or None, "CapDrop": o.cap_drop or None,
            "SecurityOpt": (["no-new-privileges"] if o.no_new_privileges else [])
            + ([f"seccomp={o.seccomp}"] if o.seccomp else []) or None,
            "Memory": o.memory, "MemorySwap": o.memory_swap or (2 * o.memory if o.memory
                                                                 else 0),
            "MemoryReservation": o.memory_reservation, "NanoCpus": int(o.cpus * 1e9),
            "CpuShares": o.cpu_shares, "CpusetCpus": o.cpuset_cpus,
            "PidsLimit": o.pids_limit or None, "ShmSize": o.shm_size,
            "OomScoreAdj": o.oom_score_adj, "Init": o.init or None, "Runtime": o.runtime
            or "runc", "Sysctls": o.sysctls or None, "GroupAdd": o.group_add or None,
            "Ulimits": [{"Name": k, "Soft": s, "Hard": h} for k, (s, h) in o.ulimits.items()]
            or None, "Tmpfs": {m.target: ",".join(m.options) for m in o.mounts
                               if m.type == "tmpfs"} or None,
        },
        "Mounts": [{"Type": m.type, "Name": m.source if m.type == "volume" else None,
                    "Source": m.source, "Destination": m.target, "RW": not m.readonly}
                   for m in o.mounts if m.type != "tmpfs"],
        "Config": {
            "Hostname": o.hostname or c.id[:12], "User": o.user or img.get("User", ""),
            "AttachStdin": o.interactive, "Tty": o.tty, "OpenStdin": o.interactive,
            "Env": spec.merge_env(img.get("Env") or [], o.env), "Cmd": cmd,
            "Image": c.image, "Volumes": None, "WorkingDir": o.workdir or img.get(
                "WorkingDir", ""), "Entrypoint": entry, "Labels": {
                **(img.get("Labels") or {}), **o.labels},
            "StopSignal": o.stop_signal or img.get("StopSignal") or None,
            "Healthcheck": o.health or img.get("Healthcheck"),
        },
        "NetworkSettings": network_settings or {"Networks": {}, "Ports": {}},
    }
