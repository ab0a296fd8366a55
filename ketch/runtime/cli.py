"""`ketch-runc`: runc's command line, for Docker, containerd, Podman, CRI-O and people.

A small hand-written parser in runc's (urfave/cli) style: global flags, a
command, its flags (`-f`, `--flag`, `--flag=v`), then positionals. argparse
and click are avoided on purpose: `ketch-runc run` must not pay for their
imports. Errors print one line (`ketch-runc: ...`, also to --log), exit 1.
"""

from __future__ import annotations

import os
import sys

from ketch.errors import InvalidArgument, KetchError

VERSION = "0.1.0"
# name -> {flag: (dest, takes_value)}; "*" marks flags that may repeat
_COMMON_CREATE = {"bundle": ("bundle", True), "b": ("bundle", True),
                  "pid-file": ("pid_file", True), "console-socket": ("console_socket", True),
                  "no-pivot": ("no_pivot", False), "no-new-keyring": ("no_new_keyring", False),
                  "preserve-fds": ("preserve_fds", True), "pidfd-socket": ("pidfd_socket", True)}
COMMANDS: dict[str, dict[str, tuple[str, bool]]] = {
    "create": _COMMON_CREATE,
    "run": {**_COMMON_CREATE, "detach": ("detach", False), "d": ("detach", False),
            "no-subreaper": ("no_subreaper", False), "keep": ("keep", False)},
    "start": {}, "state": {}, "pause": {}, "resume": {}, "features": {},
    "kill": {"all": ("all", False), "a": ("all", False)},
    "delete": {"force": ("force", False), "f": ("force", False)},
    "list": {"quiet": ("quiet", False), "q": ("quiet", False), "format": ("format", True),
             "f": ("format", True)},
    "ps": {"format": ("format", True), "f": ("format", True)},
    "events": {"stats": ("stats", False), "interval": ("interval", True)},
    "spec": {"bundle": ("bundle", True), "b": ("bundle", True), "rootless": ("rootless", False)},
    "exec": {"process": ("process", True), "p": ("process", True), "detach": ("detach", False),
             "d": ("detach", False), "tty": ("tty", False), "t": ("tty", False),
             "env": ("env*", True), "e": ("env*", True), "cwd": ("cwd", True),
             "user": ("user", True), "u": ("user", True), "pid-file": ("pid_file", True),
             "console-socket": ("console_socket", True), "preserve-fds": ("preserve_fds", True),
             "no-new-privs": ("no_new_privs", False), "cap": ("cap*", True), "c": ("cap*", True),
             "additional-gids": ("gids*", True), "g": ("gids*", True),
             "process-label": ("label", True), "apparmor": ("apparmor", True),
             "ignore-paused": ("ignore_paused", False), "cgroup": ("cgroup", True)},
    "update": {"resources": ("resources", True), "r": ("resources", True),
               "memory": ("memory", True), "memory-swap": ("memory_swap", True),
               "memory-reservation": ("memory_reservation", True),
               "cpu-shares": ("cpu_shares", True), "cpu-quota": ("cpu_quota", True),
               "cpu-period": ("cpu_period", True), "cpuset-cpus": ("cpuset_cpus", True),
               "cpuset-mems": ("cpuset_mems", True), "pids-limit": ("pids_limit", True)},
}
GLOBAL = {"root": ("root", True), "log": ("log", True), "log-format": ("log_format", True),
          "debug": ("debug", False), "systemd-cgroup": ("systemd_cgroup", False),
          "rootless": ("rootless", True), "criu": ("criu", True)}
# positionals: (minimum, maximum or None for "the rest")
_ARGS = {"exec": (1, None), "ps": (1, None), "kill": (1, 2), "list": (0, 0), "spec": (0, 0),
         "features": (0, 0)}
USAGE = ("usage: ketch-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug] "
         "COMMAND [OPTIONS] [ID]\ncommands: " + " ".join(sorted(COMMANDS)))


def parse(argv: list[str], table: dict, stop_at_positional: bool) -> tuple[dict, list[str]]:
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            if stop_at_positional:
                rest += argv[i:]
                break
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in table:
            raise InvalidArgument(f"flag provided but not defined: -{name}")
        dest, takes = table[name]
        if takes and not eq:
            if i >= len(argv):
                raise InvalidArgument(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        elif not takes:
            value = value.lower() not in ("false", "0") if eq else True
        if dest.endswith("*"):
            opts.setdefault(dest[:-1], []).append(value)
        else:
            opts[dest] = value
    return opts, rest


def main(argv: list[str] | None = None, early: dict | None = None) -> int:
    """`early`: stage 1 begun by the launcher from argv (create.begin_from_argv)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        gopts, rest = parse(argv, {**GLOBAL, "version": ("version", False),
                                   "v": ("version", False), "help": ("help", False),
                                   "h": ("help", False)}, True)
    except InvalidArgument as exc:
        return _fail({}, str(exc), 1)
    if gopts.get("version"):
        print(f"ketch-runc version {VERSION}\nspec: 1.2.0")
        return 0
    if gopts.get("help") or not rest:
        print(USAGE)
        return 0 if gopts.get("help") else 1
    cmd, args = rest[0], rest[1:]
    try:
        if cmd not in COMMANDS:
            raise InvalidArgument(f"no such command {cmd!r}")
        if gopts.get("systemd_cgroup"):
            raise InvalidArgument("--systemd-cgroup is not supported: ketch-runc drives "
                                  "cgroupfs directly; drop the flag")
        opts, pos = parse(args, {**COMMANDS[cmd], "help": ("help", False)},
                          cmd in ("exec", "ps"))
        lo, hi = _ARGS.get(cmd, (1, 1))
        if len(pos) < lo or (hi is not None and len(pos) > hi):
            raise InvalidArgument(f"{cmd}: expected {'an ID' if lo else 'no arguments'}"
                                  f"{' and more' if hi != lo and hi else ''}, got {pos or 'none'}")
        root = gopts.get("root") or os.environ.get("KETCH_RUNC_ROOT") or "/run/ketch-runc"
        if cmd in ("create", "run"):
            return _create(cmd, os.path.abspath(root), gopts, opts, pos, early)
        from ketch.runtime import log
        log.configure(gopts.get("log"), gopts.get("log_format"))
        from ketch.runtime import commands
        rc = getattr(commands, "cmd_" + cmd)(os.path.abspath(root), opts, pos)
        sys.stdout.flush()
        return rc or 0
    except KetchError as exc:
        return _fail(gopts, str(exc), exc.exit_code if exc.exit_code != 125 else 1)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if gopts.get("debug"):
            raise
        from ketch.runtime.sync import errmsg
        return _fail(gopts, errmsg(exc), 1)
    except Exception as exc:  # noqa: BLE001 - never a traceback unless --debug
        if gopts.get("debug"):
            raise
        return _fail(gopts, f"internal error: {type(exc).__name__}: {exc}", 1)


def _create(cmd: str, root: str, gopts: dict, opts: dict, pos: list[str],
            early: dict | None) -> int:
    """`create` and `run`: init's stage 1 is started before anything else is loaded.

    Its interpreter then boots on the other core while this one imports the
    rest of create's code and reads the config (~10 ms of a start here); every
    import ahead of the spawn delays the container by its cost, even --log's
    (an error before it is logged by _fail, which configures the log itself).
    """
    from ketch.runtime import create
    kw = create.options(opts)
    own = cmd == "run" and not opts.get("detach")
    if not create.early_matches(early, own, kw["console_socket"], kw["preserve_fds"]):
        if early is not None:
            create.abandon(early)   # the launcher guessed other flags
        early = create.begin(own, kw["console_socket"], kw["preserve_fds"])
    from ketch.runtime import log
    log.configure(gopts.get("log"), gopts.get("log_format"))
    try:
        from ketch.runtime import commands
        rc = getattr(commands, "cmd_" + cmd)(root, opts, pos, early)
    finally:
        create.abandon(early)   # a no-op once create() took it over
    sys.stdout.flush()
    return rc or 0


def _fail(gopts: dict, msg: str, code: int) -> int:
    from ketch.runtime import log
    log.configure(gopts.get("log"), gopts.get("log_format"))
    log.error(msg)
    if gopts.get("debug"):
        import traceback
        traceback.print_exc()
    return code
