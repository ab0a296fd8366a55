"""The rest of the container commands: logs, exec, pause, rename, update, top, port,
and the `container` group (ls, prune, and the monitor's `cleanup` hook)."""

from __future__ import annotations

import json
import sys

import click

from ketch.cli._exit import DockerCommand
from ketch.errors import Conflict, KetchError

CTX = {"ignore_unknown_options": False, "allow_interspersed_args": False}


def _conn():
    from ketch.engine import containers
    return containers.connect()


def _get(ref: str):
    from ketch.engine import containers
    conn = _conn()
    return conn, containers.lookup(conn, ref)


@click.command(cls=DockerCommand, context_settings=CTX)
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end.")
@click.option("--since", default="", help="Show logs since timestamp or relative (42m).")
@click.option("--until", default="", help="Show logs before a timestamp or relative.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--details", is_flag=True, help="Show extra details.")
@click.argument("container")
def logs(follow, tail, since, until, timestamps, details, container):
    """Fetch the logs of a container."""
    from ketch.engine import logs as engine_logs
    _conn_, c = _get(container)
    if c.options.log_driver == "none":
        raise KetchError('configured logging driver does not support reading')
    n = -1 if tail == "all" else int(tail)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for ts, stream, data in engine_logs.read(
            engine_logs.log_path(c.id), c, follow=follow, tail=n,
            since=engine_logs.since_value(since), until=engine_logs.since_value(until)):
        target = err if stream == "stderr" else out
        if timestamps:
            target.write(ts.replace("+00:00", "Z").encode() + b" ")
        target.write(data)
        target.flush()


@click.command("exec", cls=DockerCommand, context_settings=CTX)
@click.option("-d", "--detach", is_flag=True, help="Detached mode.")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("-u", "--user", default="", help="Username or UID (name|uid[:group|gid]).")
@click.option("-w", "--workdir", default="", help="Working directory.")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(detach, interactive, tty, env, user, workdir, privileged, container, command):
    """Execute a command in a running container."""
    from ketch.engine import execs
    conn, c = _get(container)
    code = execs.run(conn, c, list(command), env=list(env), user=user, workdir=workdir,
                     tty=tty, interactive=interactive, detach=detach, privileged=privileged)
    sys.exit(code)


@click.command(cls=DockerCommand, context_settings=CTX)
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy received signals.")
@click.argument("container")
def attach(no_stdin, sig_proxy, container):
    """Attach local standard input, output, and error streams to a running container."""
    from ketch.engine import attach as engine_attach
    from ketch.engine import lifecycle, monitor
    conn, c = _get(container)
    if c.status != "running":
        raise Conflict("You cannot attach to a stopped container, start it first")
    sock = monitor.attach_socket(c.id)
    bundle = str(lifecycle.bundle_dir(c.id))
    try:
        detached = engine_attach.pump(
            sock, stdin=c.options.interactive and not no_stdin, tty=c.options.tty,
            on_resize=lambda r, col: monitor.resize(c.id, bundle, r, col))
    finally:
        sock.close()
    if detached:
        return
    sys.exit(_exit_code_after(conn, c))


def _exit_code_after(conn, c) -> int:
    """The exit code, from the monitor's exit file or, once cleaned up, from the row."""
    import time

    from ketch.engine import containers, monitor
    for _ in range(200):
        code = monitor.read_exit_code(c.id)
        if code is not None:
            return code
        cur = containers.get(conn, c.id)
        if cur is None or cur.status in ("exited", "restarting"):
            return cur.exit_code if cur else 0
        time.sleep(0.05)
    return 0


def _runtime_verb(refs, verb: str, want: str, new: str, msg: str) -> None:
    from ketch.engine import containers, events, ocicli
    conn = _conn()
    for ref in refs:
        c = containers.lookup(conn, ref)
        if c.status != want:
            raise Conflict(msg.format(id=c.id))
        ocicli.run(c.options.runtime, verb, c.id)
        containers.update(conn, c.id, status=new)
        events.emit("container", "pause" if verb == "pause" else "unpause", c.id,
                    name=c.name, image=c.image)
        click.echo(ref)


@click.command(cls=DockerCommand, context_settings=CTX)
@click.argument("containers", nargs=-1, required=True)
def pause(containers):
    """Pause all processes within one or more containers."""
    _runtime_verb(containers, "pause", "running", "paused", "Container {id} is not running")


@click.command(cls=DockerCommand, context_settings=CTX)
@click.argument("containers", nargs=-1, required=True)
def unpause(containers):
    """Unpause all processes within one or more containers."""
    _runtime_verb(containers, "resume", "paused", "running", "Container {id} is not paused")


@click.command(cls=DockerCommand, context_settings=CTX)
@click.argument("container")
@click.argument("new_name")
def rename(container, new_name):
    """Rename a container."""
    import sqlite3

    from ketch.engine import containers, events
    from ketch.errors import AlreadyExists
    conn, c = _get(container)
    containers.check_name(new_name)
    try:
        containers.update(conn, c.id, name=new_name.lstrip("/"))
        events.emit("container", "rename", c.id, name=new_name.lstrip("/"),
                    oldName="/" + c.name, image=c.image)
    except sqlite3.IntegrityError:
        other = containers.lookup(conn, new_name)
        raise AlreadyExists(f'Conflict. The container name "/{new_name}" is already in use '
                            f'by container "{other.id}". You have to remove (or rename) that '
                            "container to be able to reuse that name.") from None


@click.command(cls=DockerCommand, context_settings=CTX)
@click.option("--cpus", default=None, help="Number of CPUs.")
@click.option("-m", "--memory", default=None, help="Memory limit.")
@click.option("--memory-swap", default=None, help="Swap limit (memory + swap), -1 unlimited.")
@click.option("--pids-limit", type=int, default=None, help="Tune container pids limit.")
@click.option("--restart", default=None, help="Restart policy.")
@click.argument("containers", nargs=-1, required=True)
def update(cpus, memory, memory_swap, pids_limit, restart, containers):
    """Update configuration of one or more containers."""
    from ketch.engine import containers as store
    from ketch.engine import ocicli, spec
    from ketch.engine import options as o
    conn = _conn()
    for ref in containers:
        c = store.lookup(conn, ref)
        opts = c.options
        if cpus is not None:
            opts.cpus = o.parse_cpus(cpus)
        if memory is not None:
            opts.memory = o.parse_bytes(memory)
        if memory_swap is not None:
            opts.memory_swap = o.parse_memory_swap(memory_swap)
        if pids_limit is not None:
            opts.pids_limit = pids_limit
        if restart is not None:
            opts.restart, opts.restart_max = o.parse_restart(restart)
        if c.running:
            res = spec.resources(opts)
            res.pop("devices", None)
            ocicli.run(opts.runtime, "update", "--resources", "-", c.id,
                       input=json.dumps(res).encode())
        store.update(conn, c.id, options=opts)
        click.echo(ref)


@click.command(cls=DockerCommand, context_settings=CTX)
@click.argument("container")
@click.argument("ps_args", nargs=-1)
def top(container, ps_args):
    """Display the running processes of a container."""
    import subprocess

    from ketch.engine import ocicli
    _conn_, c = _get(container)
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    pids = json.loads(ocicli.run(c.options.runtime, "ps", "--format", "json", c.id).stdout
                      or b"[]")
    if not pids:
        return
    args = list(ps_args) or ["-f"]
    out = subprocess.run(["ps", *args, "-p", ",".join(map(str, pids))], capture_output=True,
                         text=True)
    click.echo(out.stdout, nl=False)


@click.command(cls=DockerCommand, context_settings=CTX)
@click.argument("container")
@click.argument("port", required=False)
def port(container, port):
    """List port mappings or a specific mapping for the container."""
    conn, c = _get(container)
    try:
        from ketch.engine import networks
        mapping = networks.ports(conn, c.id)
    except Exception:  # noqa: BLE001 - no networking, no ports
        mapping = {}
    for key, binds in sorted(mapping.items()):
        if port and key not in (port, f"{port}/tcp"):
            continue
        for b in binds or []:
            click.echo(f"{key} -> {b.get('HostIp', '0.0.0.0')}:{b.get('HostPort')}")


@click.group(context_settings=CTX)
def container():
    """Manage containers."""


container.command_class = DockerCommand


@container.command("cleanup", hidden=True)
@click.argument("cid")
def container_cleanup(cid):
    """The monitor's exit command: record the exit, tear down, apply --rm / --restart."""
    from ketch.engine import containers, lifecycle, restart
    conn = _conn()
    c = containers.get(conn, cid)
    if c is not None and c.status == "restarting":
        restart.resume(conn, cid)
        return
    lifecycle.cleanup(conn, cid)


@container.command("healthcheck-loop", hidden=True)
def container_health():
    """The root's healthcheck process (started by `start` when a container has one)."""
    from ketch.engine import health
    health.loop()


@container.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Provide filter values.")
def container_prune(force, filters):
    """Remove all stopped containers."""
    from ketch.engine import containers, lifecycle
    conn = _conn()
    gone = []
    for c in containers.all_containers(conn):
        if c.status in ("exited", "created", "dead"):
            lifecycle.remove(conn, c)
            gone.append(c.id)
    click.echo("Deleted Containers:\n" + "".join(g + "\n" for g in gone) if gone else "",
               nl=False)
    click.echo("\nTotal reclaimed space: 0B")


@container.command("ls", context_settings=CTX)
@click.option("-a", "--all", "all_", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def container_ls(ctx, all_, quiet):
    """List containers (as `ketch ps`)."""
    from ketch.cli.container import ps
    ctx.invoke(ps, all_=all_, quiet=quiet, latest=False, last=-1, size=False, no_trunc=False,
               filters=(), fmt=None)


def _add_docker_aliases() -> None:
    """`ketch container run|ps|rm|...`, as `docker container ...` has them."""
    from ketch.cli import container as top
    for name in ("run", "create", "start", "stop", "restart", "kill", "rm", "wait", "inspect",
                 "logs", "exec_", "attach", "pause", "unpause", "rename", "update", "top",
                 "port", "stats", "cp", "diff", "commit", "export"):
        cmd = getattr(top, name)
        container.add_command(cmd, name.rstrip("_"))


_add_docker_aliases()
