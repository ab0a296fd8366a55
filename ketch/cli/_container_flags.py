"""The flags of `ketch run` and `ketch create` (Docker's names), and argv -> CreateOptions.

Declared once with cli/argv.py: parsed there without click on `run`/`create`,
and turned into click options for `--help`. Values are validated here through
the engine's parsers, so a bad flag fails before anything is created, with
Docker's wording and exit code 125.
"""

from __future__ import annotations

from ketch.cli.argv import argument, option
from ketch.engine import options as o
from ketch.errors import InvalidArgument

_MULTI = dict(multiple=True, metavar="LIST")

FLAGS = [
    option("-d", "--detach", is_flag=True, help="Run in the background, print the id."),
    option("-i", "--interactive", is_flag=True, help="Keep STDIN open."),
    option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
    option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits."),
    option("--name", default="", help="Assign a name to the container."),
    option("-e", "--env", **_MULTI, help="Set environment variables."),
    option("--env-file", **_MULTI, help="Read environment variables from a file."),
    option("-l", "--label", **_MULTI, help="Set metadata on a container."),
    option("-v", "--volume", **_MULTI, help="Bind mount a volume (src:dst[:ro])."),
    option("--mount", **_MULTI, help="Attach a filesystem mount (type=...,target=...)."),
    option("--tmpfs", **_MULTI, help="Mount a tmpfs directory."),
    option("-w", "--workdir", default="", help="Working directory inside the container."),
    option("-u", "--user", default="", help="Username or UID (name|uid[:group|gid])."),
    option("--group-add", **_MULTI, help="Add additional groups to join."),
    option("--entrypoint", default=None, help="Overwrite the image's ENTRYPOINT."),
    option("-h", "--hostname", default="", help="Container host name."),
    option("--init", is_flag=True, help="Run an init (tini) as PID 1 that reaps."),
    option("--restart", default="no", help="Restart policy (no|on-failure[:N]|always|"
           "unless-stopped)."),
    option("--stop-signal", default="", help="Signal to stop the container."),
    option("--stop-timeout", type=int, default=None, help="Seconds to wait on stop."),
    option("--health-cmd", default=None, help="Command to run to check health."),
    option("--health-interval", default=None, help="Time between running the check."),
    option("--health-timeout", default=None, help="Maximum time to allow one check."),
    option("--health-retries", type=int, default=None, help="Failures to be unhealthy."),
    option("--health-start-period", default=None, help="Start period for the container."),
    option("--no-healthcheck", is_flag=True, help="Disable any HEALTHCHECK."),
    option("--cpus", default=None, help="Number of CPUs."),
    option("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)."),
    option("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)."),
    option("-m", "--memory", default=None, help="Memory limit."),
    option("--memory-swap", default=None, help="Swap limit equal to memory plus swap; "
           "-1 for unlimited."),
    option("--memory-reservation", default=None, help="Memory soft limit."),
    option("--pids-limit", type=int, default=0, help="Tune container pids limit."),
    option("--ulimit", **_MULTI, help="Ulimit options (nofile=1024:2048)."),
    option("--read-only", is_flag=True, help="Mount the root filesystem read-only."),
    option("--security-opt", **_MULTI, help="Security options."),
    option("--cap-add", **_MULTI, help="Add Linux capabilities."),
    option("--cap-drop", **_MULTI, help="Drop Linux capabilities."),
    option("--privileged", is_flag=True, help="Give extended privileges."),
    option("--device", **_MULTI, help="Add a host device to the container."),
    option("--sysctl", **_MULTI, help="Sysctl options."),
    option("--shm-size", default=None, help="Size of /dev/shm (default 64m)."),
    option("--oom-score-adj", type=int, default=0, help="Tune host's OOM preferences."),
    option("--network", "--net", "network", default="", help="Network (none|host|NAME)."),
    option("-p", "--publish", **_MULTI, help="Publish a container's port(s) to the host."),
    option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports."),
    option("--expose", **_MULTI, help="Expose a port or a range of ports."),
    option("--dns", **_MULTI, help="Set custom DNS servers."),
    option("--dns-search", **_MULTI, help="Set custom DNS search domains."),
    option("--dns-option", **_MULTI, help="Set DNS options."),
    option("--add-host", **_MULTI, help="Add a custom host-to-IP mapping (host:ip)."),
    option("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)."),
    option("--mac-address", default="", help="Container MAC address."),
    option("--network-alias", **_MULTI, help="Add network-scoped alias."),
    option("--runtime", default="", help="Runtime (runc, vm, or a path)."),
    option("--pull", choices=("always", "missing", "never"), default="missing",
           help="Pull image before running."),
    option("--platform", default="", help="Set platform if server is multi-platform."),
    option("--log-driver", choices=("json-file", "none", "k8s-file"),
           default="json-file", help="Logging driver for the container."),
    option("--log-opt", **_MULTI, help="Log driver options (max-size=, max-file=)."),
]


def create_flags(fn):
    for flag in reversed(FLAGS):
        fn = flag(fn)
    fn = argument("command", nargs=-1, required=False)(fn)
    fn = argument("image")(fn)
    return fn


def _security(opts: o.CreateOptions, items: tuple[str, ...]) -> None:
    for item in items:
        key, sep, val = item.replace(":", "=", 1).partition("=")
        if key == "no-new-privileges" and val in ("", "true"):
            opts.no_new_privileges = True
        elif key == "no-new-privileges" and val == "false":
            opts.no_new_privileges = False
        elif key == "seccomp" and sep:
            opts.seccomp = val
        elif key in ("apparmor", "label"):
            continue   # no LSM on this path; accepted like Docker on hosts without them
        else:
            raise InvalidArgument(f"invalid --security-opt: {item!r}")


def _health(kw: dict) -> dict | None:
    if kw["health_cmd"] is None and not any(kw[k] for k in (
            "health_interval", "health_timeout", "health_retries", "health_start_period")):
        return None
    h: dict = {}
    if kw["health_cmd"] is not None:
        h["Test"] = ["CMD-SHELL", kw["health_cmd"]]
    for key, flag in (("Interval", "health_interval"), ("Timeout", "health_timeout"),
                      ("StartPeriod", "health_start_period")):
        if kw[flag]:
            h[key] = o.parse_duration(kw[flag], "--" + flag.replace("_", "-"))
    if kw["health_retries"] is not None:
        h["Retries"] = kw["health_retries"]
    return h


def _net_opts(kw: dict) -> dict:
    pairs = {"ports": list(kw["publish"]), "publish_all": kw["publish_all"],
             "exposed": [e if "/" in e else e + "/tcp" for e in kw["expose"]],
             "dns": list(kw["dns"]), "dns_search": list(kw["dns_search"]),
             "dns_options": list(kw["dns_option"]), "extra_hosts": list(kw["add_host"]),
             "ip": kw["ip"], "mac": kw["mac_address"], "aliases": list(kw["network_alias"])}
    return {k: v for k, v in pairs.items() if v}


def to_options(kw: dict) -> o.CreateOptions:
    """Turn the parsed keyword arguments into validated CreateOptions."""
    opts = o.CreateOptions(image=kw["image"], command=list(kw["command"]), name=kw["name"],
                           workdir=kw["workdir"], user=kw["user"], hostname=kw["hostname"],
                           init=kw["init"], tty=kw["tty"], interactive=kw["interactive"],
                           auto_remove=kw["auto_remove"], stop_signal=kw["stop_signal"],
                           stop_timeout=kw["stop_timeout"], network=kw["network"],
                           runtime=kw["runtime"], log_driver=kw["log_driver"],
                           privileged=kw["privileged"], read_only=kw["read_only"],
                           cpu_shares=kw["cpu_shares"], cpuset_cpus=kw["cpuset_cpus"],
                           pids_limit=kw["pids_limit"], oom_score_adj=kw["oom_score_adj"])
    if kw["entrypoint"] is not None:
        opts.entrypoint = [kw["entrypoint"]] if kw["entrypoint"] else []
    env = []
    for f in kw["env_file"]:
        env += o.read_env_file(f)
    opts.env = env + o.expand_env(list(kw["env"]))
    opts.labels = o.parse_labels(list(kw["label"]))
    opts.mounts = ([o.parse_volume(v) for v in kw["volume"]]
                   + [o.parse_mount(m) for m in kw["mount"]]
                   + [o.parse_tmpfs(t) for t in kw["tmpfs"]])
    opts.group_add = list(kw["group_add"])
    opts.restart, opts.restart_max = o.parse_restart(kw["restart"])
    if opts.restart != "no" and opts.auto_remove:
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    opts.health = _health(kw)
    opts.no_healthcheck = kw["no_healthcheck"]
    if kw["cpus"] is not None:
        opts.cpus = o.parse_cpus(kw["cpus"])
    if kw["memory"] is not None:
        opts.memory = o.parse_bytes(kw["memory"], "--memory")
        if opts.memory and opts.memory < 6 << 20:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if kw["memory_swap"] is not None:
        opts.memory_swap = o.parse_memory_swap(kw["memory_swap"])
        if opts.memory_swap > 0 and opts.memory_swap < opts.memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit,"
                                  " see usage")
        if opts.memory_swap and not opts.memory:
            raise InvalidArgument("You should always set the Memory limit when using "
                                  "Memoryswap limit, see usage")
    if kw["memory_reservation"] is not None:
        opts.memory_reservation = o.parse_bytes(kw["memory_reservation"],
                                                "--memory-reservation")
    if kw["shm_size"] is not None:
        opts.shm_size = o.parse_bytes(kw["shm_size"], "--shm-size")
    opts.ulimits = dict(o.parse_ulimit(u) for u in kw["ulimit"])
    _security(opts, kw["security_opt"])
    opts.cap_add, opts.cap_drop = list(kw["cap_add"]), list(kw["cap_drop"])
    opts.devices = list(kw["device"])
    for s in kw["sysctl"]:
        k, eq, v = s.partition("=")
        if not eq:
            raise InvalidArgument(f"invalid argument \"{s}\" for \"--sysctl\" flag")
        opts.sysctls[k] = v
    for lo in kw["log_opt"]:
        k, eq, v = lo.partition("=")
        if not eq or k not in ("max-size", "max-file", "tag", "mode", "compress"):
            raise InvalidArgument(f"unknown log opt '{lo}' for json-file log driver")
        opts.log_opts[k] = v
    if "max-size" in opts.log_opts:
        o.parse_bytes(opts.log_opts["max-size"], "--log-opt max-size")
    if "max-file" in opts.log_opts:
        count = opts.log_opts["max-file"]
        if not count.isdigit():
            raise InvalidArgument(f'invalid value for log opt max-file: "{count}"')
        if int(count) < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    opts.net_opts = _net_opts(kw)
    if opts.net_opts and opts.network in ("none", "host") and (
            opts.net_opts.get("ports") or opts.net_opts.get("publish_all")):
        raise InvalidArgument(f"published ports are discarded when using {opts.network} "
                              "network mode; leave out -p/-P")
    if kw["platform"] and kw["platform"] not in ("linux/amd64", "linux/x86_64", "amd64"):
        raise InvalidArgument(f"image platform {kw['platform']!r} does not match the host "
                              "platform linux/amd64")
    return opts
