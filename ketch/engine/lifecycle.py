"""Container lifecycle: create, start, stop, kill, remove, cleanup after exit, restart.

Every step that makes something (a row, a snapshot, a mount, a monitor, a
runtime container) is registered on an ExitStack so a failure halfway undoes
it all: bad input leaves no row, mount, cgroup or process behind. Per
container, an flock serialises start/cleanup/remove between the CLI, the
monitor's exit command and a restarting back-off sleeper.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path

from ketch import paths
from ketch.engine import bundle, containers, events, monitor, ocicli, rootfs, spec
from ketch.engine.containers import Container
from ketch.engine.options import CreateOptions
from ketch.errors import Conflict, KetchError, NotFound

bundle_dir = bundle.bundle_dir


def _rmtree(path) -> None:
    import shutil  # off the start path: shutil imports bz2, lzma and fnmatch
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def locked(cid: str):
    d = paths.runroot() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / cid, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def drop_lock(cid: str) -> None:
    """Remove a gone container's lock file (taking the lock creates it)."""
    (paths.runroot() / "locks" / cid).unlink(missing_ok=True)


def create(conn: sqlite3.Connection, opts: CreateOptions, cid: str | None = None) -> Container:
    """Record the container and prepare its rootfs snapshot (nothing runs yet).

    `cid`: the id to give it (a `run` that forked its creator early chose it)."""
    from ketch.engine import images, networks, volumes

    networks.mode(opts.network)  # validate the --network value before anything exists
    with contextlib.suppress(KetchError):   # best effort; `system prune` reports failures
        networks.reconcile_if_needed(conn)  # a crash's leftovers (leases, veths) go first
    ocicli.binary(opts.runtime)  # and the --runtime name
    image = images.resolve(conn, opts.image)
    img = spec.image_section(image.config)
    spec.process_args(opts, img)   # "no command specified" before anything is made
    spec.validate(opts)
    if opts.name:
        containers.check_name(opts.name)
    for m in opts.mounts:
        if m.type == "volume" and not m.source:
            m.source = os.urandom(32).hex()  # anonymous volume, named now
    cid = cid or containers.new_id()
    with contextlib.ExitStack() as undo:
        name = _claim_name(conn, cid, opts, image)
        undo.callback(containers.delete, conn, cid)
        bundle = bundle_dir(cid)
        bundle.mkdir(parents=True)
        undo.callback(_rmtree, bundle)
        mounts = images.prepare_rootfs(conn, image, cid)
        undo.callback(images.remove_rootfs, conn, cid)
        for m in opts.mounts:
            if m.type == "volume":
                volumes.create(conn, m.source, anonymous=len(m.source) == 64)
        containers.update(conn, cid, rootfs=mounts)
        undo.pop_all()
    events.emit("container", "create", cid, name=name, image=opts.image)
    return containers.get(conn, cid)


def _claim_name(conn: sqlite3.Connection, cid: str, opts: CreateOptions, image) -> str:
    """Insert the row under the asked name, or a random one (retrying a lost race)."""
    from ketch.errors import AlreadyExists
    for attempt in range(20):
        name = opts.name.lstrip("/") or containers.random_name(conn)
        try:
            containers.insert(conn, cid, name, opts.image, image.id, opts, image.config)
            return name
        except AlreadyExists:
            if opts.name or attempt == 19:
                raise
    raise AssertionError("unreachable")


def start(conn: sqlite3.Connection, c: Container, *, attach: bool = False,
          restarting: bool = False, creator: monitor.Creator | None = None):
    """Mount, write config.json, let the monitor create the container, network it, start it.

    Returns the attach socket (connected before `start`, so no output is lost)
    when `attach` is true, else None. `restarting`: a restart policy's attempt,
    which a `stop` that got the lock first cancels. `creator`: a monitor.Creator
    the caller forked early (`run`), used if the runtime is ketch-runc.
    """
    from ketch.engine import images, networks
    with locked(c.id):
        c = containers.get(conn, c.id)
        if c is None:
            raise NotFound("No such container")
        if restarting and (c.status != "restarting" or c.manually_stopped):
            return None
        if c.status in ("running", "paused"):
            return monitor.attach_socket(c.id) if attach else None
        opts = c.options
        b = bundle_dir(c.id)
        mode = networks.mode(opts.network)
        if c.pid:   # it ran and was never cleaned up (its monitor died): drop the old state
            _force_delete(c)
        with contextlib.ExitStack() as undo:
            try:
                mounts = images.rootfs_mounts(conn, c.id)
            except (AttributeError, NotFound):
                mounts = c.rootfs
            if opts.auto_remove:
                mounts = rootfs.volatile(mounts)
            rootfs.mount(mounts, str(b / "rootfs"))
            undo.callback(rootfs.unmount, str(b / "rootfs"))
            hostname = bundle.hostname(c)
            bundle.etc_files(c, hostname)
            netns = _joined_netns(conn, mode)
            config = spec.build(c.id, opts, c.image_config, str(b / "rootfs"),
                                bundle.mounts(c), hostname, netns)
            config.setdefault("annotations", {}).update(_vm_port_forwards(c, mode))
            spec.write(str(b), config)
            log = None if opts.log_driver == "none" else bundle.log_file(c.id)
            undo.callback(_force_delete, c)
            undo.callback(monitor.forget, c.id)
            try:
                pid, mon = monitor.launch(
                    c.id, c.name, str(b), opts.runtime, tty=opts.tty, stdin=opts.interactive,
                    log_path=log, log_max=_log_max(opts), log_files=_log_files(opts),
                    meanwhile=lambda: _preload(opts, mode, attach), creator=creator)
            except KetchError as exc:
                containers.update(conn, c.id, exit_code=exc.exit_code, error=str(exc))
                raise
            if mode.kind == "bridge":
                _attach_network(conn, c, mode, pid, hostname)
                undo.callback(networks.detach, conn, c.id)
            sock = monitor.attach_socket(c.id) if attach else None
            if sock is not None:
                undo.callback(sock.close)
            ocicli.run(opts.runtime, "start", c.id)
            containers.update(conn, c.id, status="running", pid=pid, monitor_pid=mon,
                              monitor_start=containers.process_start(mon), exit_code=0,
                              error="", oom_killed=0, started_at=time.time(),
                              finished_at=0, manually_stopped=0)
            undo.pop_all()
        events.emit("container", "start", c.id, name=c.name, image=c.image)
        if opts.health and not opts.no_healthcheck or _image_health(c):
            _spawn_health()
        return sock


def _preload(opts: CreateOptions, mode, attach: bool) -> None:
    """What the rest of start and the exit's cleanup import, loaded while the monitor creates."""
    ocicli.preload(opts.runtime)
    if attach:
        import ketch.engine.attach  # noqa: F401
        import ketch.engine.restart  # noqa: F401


def _image_health(c: Container) -> bool:
    test = (spec.image_section(c.image_config).get("Healthcheck") or {}).get("Test")
    return bool(test) and test[0] != "NONE" and not c.options.no_healthcheck


def _spawn_health() -> None:
    """Make sure the root's healthcheck process runs (it exits at once if it already does)."""
    import subprocess
    subprocess.Popen([monitor.ketch_binary(), "container", "healthcheck-loop"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def _log_max(opts: CreateOptions) -> int:
    from ketch.engine.options import parse_bytes
    size = opts.log_opts.get("max-size")
    return parse_bytes(size, "--log-opt max-size") if size else 0


def _log_files(opts: CreateOptions) -> int:
    return int(opts.log_opts.get("max-file") or 1)


def _joined_netns(conn: sqlite3.Connection, mode) -> str:
    """For --network container:<x>: the network namespace of running container x."""
    if mode.kind != "container":
        return ""
    target = containers.lookup(conn, mode.target)
    if target.status != "running" or not target.pid:
        raise Conflict(f"cannot join network namespace of a non running container: "
                       f"{target.id}")
    return f"/proc/{target.pid}/ns/net"


def _attach_network(conn, c: Container, mode, pid: int, hostname: str) -> None:
    try:
        from ketch.network import sandbox  # noqa: F401
    except ImportError:
        raise KetchError("bridge networks are not available yet; use --network none or "
                         "--network host") from None
    from ketch.engine import networks
    b = bundle_dir(c.id)
    networks.attach(conn, c.id, c.options.network or "bridge", f"/proc/{pid}/ns/net",
                    {**_net_opts(c), "name": c.name, "hostname": hostname,
                     "hosts_path": str(b / "hosts"),
                     "resolv_conf_path": str(b / "resolv.conf"),
                     "hostname_path": str(b / "hostname")})


def _vm_port_forwards(c: Container, mode) -> dict:
    """For a micro-VM on a bridge: QEMU forwards of its published container ports.

    The bridge's DNAT brings a published port to the container's address in
    the VM shim's network namespace; the guest sits behind QEMU's user
    networking there, so QEMU must listen on each container port in that
    namespace and forward it to the same port in the guest.
    """
    if mode.kind != "bridge" or not ocicli.is_vm(c.options.runtime):
        return {}
    from ketch.network import ports
    opts = _net_opts(c)
    binds = [b for p in opts.get("ports") or [] for b in ports.parse(p)]
    if opts.get("publish_all"):
        binds += ports.exposed_bindings(opts.get("exposed") or [])
    rules = sorted({f"{b['proto']}::{b['container_port']}-:{b['container_port']}"
                    for b in binds})
    return {"ketch.vm.ports": ",".join(rules)} if rules else {}


def _net_opts(c: Container) -> dict:
    """The -p/--dns/... options, plus the image's EXPOSE ports for -P."""
    opts = dict(c.options.net_opts)
    exposed = list(spec.image_section(c.image_config).get("ExposedPorts") or {})
    if exposed or opts.get("exposed"):
        opts["exposed"] = sorted(set(exposed) | set(opts.get("exposed", [])))
    return opts


def _force_delete(c: Container) -> bool:
    """Delete the runtime's container; True when it is gone (or never existed)."""
    proc = ocicli.run(c.options.runtime, "delete", "--force", c.id, check=False)
    return proc.returncode == 0 or b"not exist" in proc.stderr or b"not found" in proc.stderr


def wait_exit(c: Container, timeout: float | None = None) -> bool:
    """Block until the monitor has recorded an exit, or is gone; False on timeout.

    Polls: the monitor writes the exit file and then ends, and a monitor killed
    without writing one must not make us wait forever. A foreground run gets
    here when the monitor closes the attach socket, after it wrote the exit
    file; the first polls are a millisecond apart for the other callers.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while monitor.read_exit_code(c.id) is None and containers.monitor_alive(c):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def _oom_killed(c: Container) -> bool:
    rel = f"{paths.cgroup_parent()}/{c.id}"
    for f, key in ((f"/sys/fs/cgroup/memory/{rel}/memory.oom_control", "oom_kill"),
                   (f"/sys/fs/cgroup/{rel}/memory.events", "oom_kill"),
                   (f"/sys/fs/cgroup/unified/{rel}/memory.events", "oom_kill")):
        try:
            for line in Path(f).read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == key and int(v) > 0:
                    return True
        except (OSError, ValueError):
            continue
    return False


def cleanup(conn: sqlite3.Connection, cid: str, *, foreground: bool = False) -> int | None:
    """After the container's process exited: record it, tear down, apply --rm/restart.

    Idempotent. Returns the exit code, or None if the container is gone.
    """
    from ketch.engine import networks, restart
    with locked(cid):
        c = containers.get(conn, cid)
        if c is None:   # removed already (e.g. `rm -f` before the monitor's exit command)
            drop_lock(cid)
            return None
        if c.status not in ("running", "paused") and not c.monitor_pid:
            return c.exit_code   # never started, or already cleaned up
        wait_exit(c, timeout=10)
        code = monitor.read_exit_code(cid)
        code = 255 if code is None else code
        oom = _oom_killed(c)
        deleted = _force_delete(c)
        if c.options.network not in ("none", "host"):
            with contextlib.suppress(Exception):
                networks.detach(conn, cid)
        rootfs.unmount(str(bundle_dir(cid) / "rootfs"))
        monitor.forget(cid)
        now = time.time()
        # The pid stays while the runtime still holds state, so `rm` deletes it again.
        containers.update(conn, cid, status="exited", exit_code=code, oom_killed=int(oom),
                          finished_at=now, pid=0 if deleted else c.pid, monitor_pid=0)
        c = containers.get(conn, cid)
    events.emit("container", "die", cid, name=c.name, image=c.image, exitCode=str(code))
    if oom:
        events.emit("container", "oom", cid, name=c.name, image=c.image)
    if c.options.auto_remove:
        remove(conn, c, force=True)
        return code
    restart.after_exit(conn, c, foreground=foreground)
    return code


def stop(conn: sqlite3.Connection, c: Container, timeout: int | None = None) -> None:
    """SIGTERM (or --stop-signal), wait --stop-timeout (10s), then SIGKILL."""
    with locked(c.id):   # so a restart policy's start either precedes this or sees it
        containers.update(conn, c.id, manually_stopped=1)
        c = containers.get(conn, c.id) or c
        if c.status == "restarting":
            containers.update(conn, c.id, status="exited")
            return
    if not c.running:
        return
    if timeout is None:
        timeout = c.options.stop_timeout if c.options.stop_timeout is not None else 10
    sig = c.options.stop_signal or _image_stop_signal(c) or "SIGTERM"
    if c.status == "paused":
        ocicli.run(c.options.runtime, "resume", c.id, check=False)
    ocicli.run(c.options.runtime, "kill", c.id, sig.removeprefix("SIG"), check=False)
    if not wait_exit(c, timeout=timeout):
        ocicli.run(c.options.runtime, "kill", c.id, "KILL", check=False)
        wait_exit(c, timeout=30)
    cleanup(conn, c.id)


def _image_stop_signal(c: Container) -> str:
    return spec.image_section(c.image_config).get("StopSignal") or ""


def kill(conn: sqlite3.Connection, c: Container, sig: str = "KILL") -> None:
    if not c.running:
        raise Conflict(f"Cannot kill container: {c.id}: container {c.id} is not running")
    name = sig.upper().removeprefix("SIG")
    import _signal
    if not name.isdigit() and not hasattr(_signal, "SIG" + name):
        from ketch.errors import InvalidArgument
        raise InvalidArgument(f"Invalid signal: {sig}")
    ocicli.run(c.options.runtime, "kill", c.id, name)
    events.emit("container", "kill", c.id, name=c.name, image=c.image, signal=name)


def remove(conn: sqlite3.Connection, c: Container, *, force: bool = False,
           volumes_too: bool = False) -> None:
    from ketch.engine import images, volumes
    if c.running:
        if not force:
            raise Conflict(f"You cannot remove a running container {c.id}. Stop the container "
                           "before attempting removal or force remove")
        containers.update(conn, c.id, manually_stopped=1)
        ocicli.run(c.options.runtime, "kill", c.id, "KILL", check=False)
        wait_exit(c, timeout=30)
        cleanup(conn, c.id)
    with locked(c.id):
        cur = containers.get(conn, c.id)
        if cur is None:   # gone already (cleanup() applied --rm)
            drop_lock(c.id)
            return
        # cleanup() already deleted the runtime's state of an exited one (pid 0).
        if (cur.pid or cur.status != "exited") and not _force_delete(c):
            # Keep the row: forgetting it would orphan the runtime's state and cgroups.
            raise KetchError(f"could not remove container {c.id}: the OCI runtime failed to "
                             "delete it; try again")
        containers.update(conn, c.id, status="removing")
        rootfs.unmount(str(bundle_dir(c.id) / "rootfs"))
        images.remove_rootfs(conn, c.id)
        _rmtree(bundle_dir(c.id))
        monitor.forget(c.id)
        containers.delete(conn, c.id)
    events.emit("container", "destroy", c.id, name=c.name, image=c.image)
    if volumes_too:
        for m in c.options.mounts:
            if m.type == "volume" and len(m.source) == 64:
                with contextlib.suppress(KetchError):
                    volumes.remove(conn, m.source)
    drop_lock(c.id)


def cleanup_stale(conn: sqlite3.Connection, c: Container) -> None:
    """Leftovers of a container whose host went away (runtime state, mount, files)."""
    _force_delete(c)
    rootfs.unmount(str(bundle_dir(c.id) / "rootfs"))
    monitor.forget(c.id, keep_exit=False)
