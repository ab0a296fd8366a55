"""`ketch run` and `ketch create`: flags -> CreateOptions -> engine; the foreground run.

A foreground run holds an flock on the container's `attached` file while it
copies stdio, so the monitor leaves the cleanup to it (no exit command); it then
records the exit, applies --rm, and exits with the container's code.
"""

from __future__ import annotations

import os
import sys

from ketch.cli._container_flags import create_flags, to_options
from ketch.cli._format import echo
from ketch.cli.argv import Commands
from ketch.errors import KetchError

# Declared with cli/argv.py (parsed without click); `run`/`create` as click
# commands (COMMANDS, `ketch container run`) are built from these on first use.
# Not interspersed: what follows IMAGE is the container's command, flags too.
FAST = Commands()


def _conn():
    from ketch.engine import containers
    return containers.connect()


def _create(kw: dict, cid: str | None = None):
    from ketch.engine import lifecycle
    from ketch.errors import NotFound
    opts = to_options(kw)
    conn = _conn()
    if kw.get("pull") == "always":
        _pull(opts.image, kw.get("platform"))
    try:
        return conn, lifecycle.create(conn, opts, cid)
    except NotFound as exc:
        if kw.get("pull") == "never" or "image" not in str(exc).lower():
            raise
    echo(f"Unable to find image '{opts.image}' locally", err=True)
    _pull(opts.image, kw.get("platform"))
    return conn, lifecycle.create(conn, opts, cid)


def _pull(ref: str, platform: str | None) -> None:
    try:
        from ketch.engine import distribution
    except ImportError:
        raise KetchError(f"pull access denied for {ref}: no registry client") from None
    distribution.pull(ref, platform=platform or None)


@FAST.command("create", interspersed=False)
@create_flags
def _cmd_create(**kw):
    """Create a new container."""
    _, c = _create(kw)
    echo(c.id)


@FAST.command("run", interspersed=False)
@create_flags
def _cmd_run(**kw):
    """Create and run a new container from an image."""
    creator = _prefork(kw)
    try:
        from ketch.engine import lifecycle
        conn, c = _create(kw, creator.cid if creator is not None else None)
        if kw["detach"]:
            try:
                lifecycle.start(conn, c, creator=creator)
            except KetchError:
                if c.options.auto_remove:
                    lifecycle.remove(conn, lifecycle.containers.get(conn, c.id), force=True)
                raise
            echo(c.id)
            return
        code = run_attached(conn, c, creator)
    finally:
        if creator is not None:
            creator.abandon()   # unused (an error came first): it and its stage 1 end
    # Everything is recorded and committed: leave without the interpreter's
    # teardown and the database's checkpoint-on-close (two fsyncs), as
    # ketch-runc does; 6-14 ms of a foreground run here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _prefork(kw: dict):
    """For ketch-runc: fork the container's creator-to-be now, so that init's
    first interpreter boots while the image is resolved and the rootfs mounted
    (engine/monitor.py, Creator)."""
    from ketch.engine import containers, monitor, ocicli
    if not ocicli.in_process(kw.get("runtime") or ""):
        return None
    return monitor.prefork(tty=bool(kw.get("tty")), stdin=bool(kw.get("interactive")),
                           cid=containers.new_id())


def run_attached(conn, c, creator=None) -> int:
    """Foreground run: hold the 'attached' lock, copy stdio, then clean up ourselves."""
    import fcntl

    from ketch.engine import attach, containers, lifecycle, monitor, ocicli
    sdir = monitor.state_dir(c.id)
    sdir.mkdir(parents=True, exist_ok=True)
    lock = os.open(sdir / "attached", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        sock = lifecycle.start(conn, c, attach=True, creator=creator)
    except KetchError:
        os.close(lock)
        if c.options.auto_remove:
            lifecycle.remove(conn, containers.get(conn, c.id), force=True)
        raise

    def forward(signum, _frame):
        ocicli.run(c.options.runtime, "kill", c.id, str(signum), check=False)
    if not c.options.tty:
        import _signal  # the C module: `signal` would import enum for its IntEnums
        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(s, forward)
    bundle = str(lifecycle.bundle_dir(c.id))
    try:
        detached = attach.pump(sock, stdin=c.options.interactive, tty=c.options.tty,
                               on_resize=lambda r, col: monitor.resize(c.id, bundle, r, col))
    finally:
        sock.close()
    if detached:   # the monitor's exit command cleans up when it ends
        os.close(lock)
        return 0
    code = lifecycle.cleanup(conn, c.id, foreground=True)
    os.close(lock)
    return 0 if code is None else code


def __getattr__(name: str):
    """`run` and `create` as click commands, built on first use."""
    return FAST.click(name)
