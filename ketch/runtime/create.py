"""`create`: bundle -> a container whose init waits on exec.fifo for `start`.

Order, for speed: init's stage 1 is spawned first (its interpreter boots on
the other core while we load our code and read the config), then the id is
claimed (its state dir) and the cgroup made, then the rest of the config is
checked. Stage 1 moves itself into the cgroup and clones init into it
(bootstrap.py): a process moved by pid waits for the kernel's migration lock,
an RCU grace period of 7-25 ms on these hosts, which used to be the longest
single step of a start. Whatever is made is on an undo list that reverses it
on any failure (kill init, remove the cgroup, remove the state dir), so bad
input leaves nothing behind.
"""

from __future__ import annotations

import os
import time

from ketch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, KetchError
from ketch.runtime import spawn

# sync and state load after begin() has spawned stage 1 (they are not needed for
# it): every import before that spawn delays the container by its cost.


class Undo:
    """contextlib.ExitStack's part we use, without its import cost on the start path."""

    def __init__(self):
        self._callbacks: list = []

    def callback(self, fn, *args) -> None:
        self._callbacks.append((fn, args))

    def pop_all(self) -> None:
        self._callbacks = []

    def adopt(self, other: Undo) -> None:
        """Take over `other`'s pending callbacks (they run with ours)."""
        self._callbacks += other._callbacks
        other._callbacks = []

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, *exc) -> None:
        self.run()

    def run(self) -> None:
        """Run the pending callbacks, newest first (errors are swallowed)."""
        while self._callbacks:
            fn, args = self._callbacks.pop()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - undo goes on; the first error is the story
                pass


def validate(spec: dict, bundle: str) -> tuple[str, dict]:
    """Check the whole config; return the absolute rootfs path and the process's
    capability sets, parsed (init is given them: one step less on its way)."""
    from ketch.oci import runtime_spec
    runtime_spec.check(spec)
    linux = spec.get("linux") or {}
    from ketch.runtime import caps, log
    sets = caps.parse_spec_warning(spec["process"].get("capabilities"), log.warn)
    if linux.get("seccomp") is not None:
        from ketch.runtime import seccomp
        seccomp.validate(linux["seccomp"])
    if linux.get("resources"):
        from ketch.runtime.cgroups import CgroupManager
        CgroupManager.validate(linux["resources"])
    if (spec.get("process") or {}).get("apparmorProfile") and \
            not os.path.exists("/sys/kernel/security/apparmor"):
        raise FailedPrecondition("process.apparmorProfile: AppArmor is not enabled on this host")
    path = spec["root"]["path"]
    rootfs = os.path.normpath(os.path.join(bundle, path))
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"root.path: {rootfs} is not a directory")
    return rootfs, sets


def options(opts: dict) -> dict:
    """create()'s keyword arguments from `create`/`run`'s parsed command-line flags."""
    preserve = opts.get("preserve_fds") or "0"
    if not str(preserve).isdigit():
        raise InvalidArgument(f"--preserve-fds: not a number: {preserve!r}")
    return {"pid_file": opts.get("pid_file"), "console_socket": opts.get("console_socket"),
            "no_pivot": bool(opts.get("no_pivot")), "preserve_fds": int(preserve)}


def begin(own_console: bool = False, console_socket: str | None = None,
          preserve_fds: int = 0) -> dict:
    """Start stage 1 ahead of create(): its interpreter boots while the caller is
    still loading code or preparing the bundle. Pass the result to
    create(early=...) with the same arguments, or to abandon() if the container
    will not be created after all."""
    undo = Undo()
    try:
        early = _start_stage1(console_socket, own_console, preserve_fds, undo)
    except BaseException:
        undo.run()
        raise
    early["undo"] = undo
    early["flags"] = (own_console, console_socket, preserve_fds)   # see early_matches()
    return early


# ketch-runc's global flags that take a value (cli.GLOBAL's; a unit test keeps them equal)
GLOBAL_VALUED = ("root", "log", "log-format", "rootless", "criu")
_EARLY_SKIP = ("console-socket", "preserve-fds", "pidfd-socket", "help", "h")


def begin_from_argv(argv: list[str]) -> dict | None:
    """begin(), for `ketch-runc create|run` read straight off its command line, before
    the CLI's own code is loaded: the launcher calls this first thing, and stage 1's
    interpreter then boots while ours loads the rest (~3 ms of imports earlier).

    A guess, checked later: the CLI parses properly, and drops this stage 1 (and
    begins again) if the flags it was begun for differ (early_matches()).
    """
    own = early_console(argv)
    return None if own is None else begin(own)


def early_console(argv: list[str]) -> bool | None:
    """For a `create` or `run` command line: whether the run holds the terminal
    itself (a foreground `run`). None for any other command, and for command lines
    with a console socket, preserved or pidfd fds, or --help: the CLI's path."""
    i, cmd = 0, None
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            cmd = arg
            break
        name, eq, _ = arg.lstrip("-").partition("=")
        if name in GLOBAL_VALUED and not eq:
            i += 1
    if cmd not in ("create", "run"):
        return None
    detach = False
    for arg in argv[i:]:
        if arg == "--":
            break
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name in _EARLY_SKIP:
            return None
        if name in ("d", "detach"):
            detach = not eq or value.lower() not in ("false", "0")
    return cmd == "run" and not detach


def early_matches(early: dict | None, own_console: bool, console_socket: str | None,
                  preserve_fds: int) -> bool:
    return early is not None and early.get("flags") == (own_console, console_socket,
                                                        preserve_fds)


def precgroup(early: dict, cid: str) -> None:
    """Make the cgroup of container `cid` (its default path) before create() is
    called, for a caller that has time (a Creator waiting for its go): ten
    mkdirs and the device rules on this hybrid host. create() uses it if the
    config names the same cgroup, else makes its own and drops this one.
    Stage 1 is not moved into it here: it moves itself (bootstrap.py)."""
    from ketch.runtime.cgroups import manager_for
    cg = manager_for(None, cid)
    early["undo"].callback(cg.destroy)
    cg.create(None)
    early["cgroup"] = cg


def warm() -> None:
    """Import what create() loads on its way (~5 ms here): for a caller that has
    time before it (a Creator waiting for its go, engine/monitor.py)."""
    from ketch.oci import runtime_spec  # noqa: F401
    from ketch.runtime import caps, fastjson, hooks, log, seccomp, state, sync, tty  # noqa: F401
    from ketch.runtime.cgroups import devices, fs, layout, v1, v2, validate  # noqa: F401


def abandon(early: dict) -> None:
    """Stop a begun stage 1 and close what begin() opened (nothing, once create()
    has taken it over)."""
    undo = early.pop("undo", None)
    if undo is not None:
        undo.run()


def create(root: str, cid: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None, no_pivot: bool = False,
           preserve_fds: int = 0, own_console: bool = False,
           early: dict | None = None) -> tuple:
    """Create the container; returns it and the pid of its init.

    `own_console` (foreground `run`): with process.terminal and no console
    socket, receive the pty master ourselves; it is left in `c.console`.
    `early`: begin()'s stage 1, begun with the same console and fd arguments.
    Returns (Container, pid of init).
    """
    from ketch.runtime import sync
    from ketch.runtime.state import check_id
    check_id(cid)
    bundle = os.path.abspath(bundle)
    if early is None:
        # Stage 1 first of all: its interpreter boots on the other core while we
        # read and check the config (it does nothing before "bootstrap", and a
        # bad config just kills it).
        early = begin(own_console, console_socket, preserve_fds)
    with Undo() as undo:
        undo.adopt(early.pop("undo"))   # its cleanup is ours now
        from ketch.oci import runtime_spec
        from ketch.runtime import fastjson
        spec = runtime_spec.load(os.path.join(bundle, "config.json"), fastjson.loads)
        os.makedirs(root, 0o711, exist_ok=True)
        cdir = os.path.join(root, cid)
        try:
            os.mkdir(cdir, 0o711)   # the id is ours from here (before its cgroup is touched)
        except FileExistsError:
            raise AlreadyExists(f"container {cid!r} already exists") from None
        undo.callback(_rmtree, cdir)
        cgroup = _Cgroup(spec, cid, early, undo)
        args = (root, cid, bundle, spec, early, cgroup.cg, console_socket or own_console,
                no_pivot, preserve_fds)
        join = cgroup.self_join(spec)
        # With `join` stage 1 moves itself and places init (bootstrap.py): no lock to
        # wait for. Without (a user namespace, or a joined user or cgroup one) we move
        # it, which on v1 hierarchies waits for an RCU grace period (7-25 ms here).
        c = _prepare(*args, join)
        if join is None:
            cgroup.cg.add(early["stage1"])
            sync.send(early["sock"], "cgroup")   # stage 1 goes on now (bootstrap.py)
        c.data["cgroup"] = cgroup.cg.to_state()
        pid = _spawn(c, spec, early, undo)
        c.save()
        if pid_file:
            from ketch.runtime.state import write_atomic
            write_atomic(os.path.abspath(pid_file), str(pid))
        undo.pop_all()
    return c, pid


def _start_stage1(console_socket: str | None, own_console: bool, preserve: int,
                  undo: Undo) -> dict:
    """Connect the console, fork+exec stage 1; everything registered for undo."""
    keep = list(range(3, 3 + preserve))
    console_fd = ours = None
    if console_socket:
        console_fd = _connect(console_socket)
    elif own_console:  # foreground run: our own end receives the master (see tty.py)
        import _socket
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        ours, console_fd = a.detach(), b.detach()
        undo.callback(os.close, ours)
    if console_fd is not None:
        undo.callback(os.close, console_fd)
        keep.append(console_fd)
    from ketch._sys import proc as _proc
    _proc.prctl(_proc.PR_SET_CHILD_SUBREAPER, 1)  # init is re-parented to us, to reap on failure
    stage1, sock = spawn.start_init(keep)
    undo.callback(os.close, sock)
    early = {"stage1": stage1, "sock": sock, "console_fd": console_fd, "ours": ours}
    undo.callback(_kill_reap_stage1, early)
    return early


def _prepare(root: str, cid: str, bundle: str, spec: dict, early: dict, cg,
             console: bool, no_pivot: bool, preserve: int, join: dict | None):
    """Check the config, make the state and exec.fifo, set the limits, send
    "bootstrap"; returns the Container."""
    from ketch.runtime import sync
    from ketch.runtime.state import Container
    rootfs, sets = validate(spec, bundle)
    if spec["process"].get("terminal") and not console:
        raise InvalidArgument("process.terminal: a terminal needs --console-socket "
                              "(or `run` in the foreground)")
    c = Container(root, cid, {
        "id": cid, "bundle": bundle, "rootfs": rootfs, "config": spec,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
    })
    os.mkfifo(c.fifo, 0o622)
    os.chmod(c.fifo, 0o622)  # past the umask: init may write it as a mapped, non-root uid
    linux = spec.get("linux") or {}
    if linux.get("resources"):
        # Limit files take no lock the move holds; set before init is forked.
        cg.set(linux["resources"])
    terminal = bool(spec["process"].get("terminal"))
    # With `join`, stage 1 moves itself into the cgroup; without, it waits for our
    # "cgroup" before it makes a cgroup or user namespace or forks init (bootstrap.py).
    sync.send(early["sock"], "bootstrap", config=spec, bundle=bundle, rootfs=rootfs,
              fifo=c.fifo, no_pivot=no_pivot, preserve_fds=preserve,
              console_fd=early["console_fd"] if terminal else None, cgroup=join, caps=sets)
    return c


class _Cgroup:
    """The container's cgroup: made at once (precgroup()'s taken as it is when it is
    the one the config names); stage 1 moves itself in when self_join() says so."""

    def __init__(self, spec: dict, cid: str, early: dict, undo: Undo):
        from ketch.runtime.cgroups import manager_for
        linux = spec.get("linux") or {}
        self.cg = manager_for(linux.get("cgroupsPath"), cid)
        made = early.pop("cgroup", None)
        reuse = made is not None and made.paths == self.cg.paths
        if reuse:
            self.cg = made   # precgroup()'s
        elif made is not None:
            made.destroy()   # precgroup() guessed another path; nothing is in it
        undo.callback(self.cg.destroy)
        undo.callback(_kill_reap_stage1, early)  # again: undo runs in reverse, the cgroup must be empty
        if reuse:
            if linux.get("devices"):
                made.allow_linux_devices(linux["devices"])
            return
        # linux.devices first: a cgroup we make starts at the default device policy,
        # and the nodes the runtime creates must stay usable without a resources rule.
        self.cg.create(linux.get("devices"))

    def self_join(self, spec: dict) -> dict | None:
        """The dirs stage 1 moves itself into, when it can (else None: we move it).

        It can unless a user namespace is new (its root may not write the host's
        cgroup files) or a user or cgroup namespace is joined.
        """
        for ns in (spec.get("linux") or {}).get("namespaces") or []:
            if ns["type"] == "user" or (ns["type"] == "cgroup" and ns.get("path")):
                return None
        return self.cg.join_dirs()


def _spawn(c, spec: dict, early: dict, undo: Undo) -> int:
    from ketch.runtime import sync
    from ketch.runtime.state import CREATING
    stage1, sock = early["stage1"], early["sock"]
    ours = early["ours"] if spec["process"].get("terminal") else None
    pid = 0
    while True:
        msg = sync.recv(sock)
        kind = msg["type"]
        if kind == "usermap":
            spawn.write_id_maps(msg["pid"], spec)
            sync.send(sock, "mapped")
        elif kind == "pid":
            pid = msg["pid"]
            undo.callback(_kill_reap_init, early, pid)
            c.data["pid"] = pid
            c.data["pid_start"] = _start_time(pid)
        elif kind == "hooks":
            state = c.oci_state(CREATING)
            state["pid"] = pid
            hooks = spec.get("hooks") or {}
            from ketch.runtime import hooks as _hooks
            # prestart (deprecated) predates "creating": its readers expect "created".
            _hooks.run_all(hooks.get("prestart"), "prestart", dict(state, status="created"))
            _hooks.run_all(hooks.get("createRuntime"), "createRuntime", state)
            sync.send(sock, "hooks-done", state=state)
        elif kind == "ready":
            # Stage 1 exits soon after sending "pid": reaped now, not then, so we
            # never sit waiting for it to be scheduled while init works.
            status = spawn.reap(stage1)
            early["stage1"] = 0   # reaped: its pid is nobody's to signal any more
            if status != 0:   # after "pid" it only brings `lo` up (bootstrap.py)
                raise KetchError(f"container init: stage 1 exited with status {status}",
                                 exit_code=1)
            if ours is not None:
                from ketch.runtime import tty
                c.console = tty.receive_master(ours)
            return pid
        elif kind == "error":
            raise KetchError(f"container init: {msg['msg']}", exit_code=1)
        else:
            raise KetchError("container init exited before it was ready", exit_code=1)


def _start_time(pid: int) -> int | None:
    from ketch.runtime.state import proc_start_time
    return proc_start_time(pid)


def _connect(path: str) -> int:
    import _socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
    except OSError as exc:
        s.close()
        raise InvalidArgument(f"--console-socket {path}: {exc.strerror}") from None
    return s.detach()


def _kill_reap_stage1(early: dict) -> None:
    if early["stage1"]:
        _kill_reap(early["stage1"])
        early["stage1"] = 0


def _kill_reap_init(early: dict, pid: int) -> None:
    """Kill init and wait until it is gone, so that its cgroup can be removed.

    init is stage 1's child until stage 1 exits (it does right after sending
    init's pid); only then is it re-parented to us (a subreaper) and can we
    wait for it. Waiting for it earlier fails at once (not our child), and the
    cgroup would still list it, dying, when it is removed.
    """
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    _kill_reap_stage1(early)   # it has nothing left to do once it sent the pid
    spawn.reap(pid)


def _kill_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    spawn.reap(pid)


def _rmtree(path: str) -> None:
    from ketch.runtime.state import Container
    Container(os.path.dirname(path), os.path.basename(path), {}).remove()
