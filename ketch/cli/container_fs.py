"""`ketch cp`, `diff`, `commit`, `export` and `stats`: a container's files and usage."""

from __future__ import annotations

import sys
import time

import click

from ketch.cli._exit import DockerCommand
from ketch.errors import Conflict, InvalidArgument

CTX = {"allow_interspersed_args": False}


def _conn():
    from ketch.engine import containers
    return containers.connect()


def _split(conn, arg: str):
    """"name:/path" -> (container, path); a host path (or -) -> (None, path)."""
    from ketch.engine import containers
    if arg == "-" or arg.startswith("/") or arg.startswith(".") or ":" not in arg:
        return None, arg
    ref, _, path = arg.partition(":")
    return containers.lookup(conn, ref), path or "/"


@click.command(cls=DockerCommand, context_settings=CTX)
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid info).")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.argument("src")
@click.argument("dst")
def cp(archive, follow_link, src, dst):
    """Copy files/folders between a container and the local filesystem."""
    from ketch.engine import copying
    conn = _conn()
    s, d = _split(conn, src), _split(conn, dst)
    copying.copy(conn, s, d, sys.stdin.buffer, sys.stdout.buffer)


_RUNTIME_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


@click.command(cls=DockerCommand, context_settings=CTX)
@click.argument("container")
def diff(container):
    """Inspect changes to files or directories on a container's filesystem."""
    from ketch.engine import containers, images
    conn = _conn()
    c = containers.lookup(conn, container)
    for ch in images.rootfs_diff(conn, c.id):
        if ch["Kind"] == 1 and ch["Path"] in _RUNTIME_FILES:
            continue   # mount points the engine binds over, not the container's changes
        click.echo(f"{'CAD'[ch['Kind']]} {ch['Path']}")


@click.command(cls=DockerCommand, context_settings=CTX)
@click.option("-a", "--author", default="", help="Author.")
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction.")
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-p", "--pause/--no-pause", default=True, help="Pause container during commit.")
@click.argument("container")
@click.argument("repository", required=False)
def commit(author, change, message, pause, container, repository):
    """Create a new image from a container's changes."""
    from ketch.engine import containers, images, ocicli, spec
    conn = _conn()
    c = containers.lookup(conn, container)
    image = images.resolve(conn, c.image_id)
    inner = dict(spec.image_section(image.config))
    o = c.options
    inner["Env"] = spec.merge_env(inner.get("Env") or [], o.env)
    if o.command:
        inner["Cmd"] = o.command
    if o.entrypoint is not None:
        inner["Entrypoint"] = o.entrypoint or None
    for key, val in (("WorkingDir", o.workdir), ("User", o.user)):
        if val:
            inner[key] = val
    if o.labels:
        inner["Labels"] = {**(inner.get("Labels") or {}), **o.labels}
    paused = pause and c.status == "running"
    if paused:
        ocicli.run(o.runtime, "pause", c.id)
    try:
        rec = images.commit(conn, c.id, image, repository, inner, list(change), message, author)
    finally:
        if paused:
            ocicli.run(o.runtime, "resume", c.id, check=False)
    click.echo(rec.id)


@click.command(cls=DockerCommand, context_settings=CTX)
@click.option("-o", "--output", default="", help="Write to a file, instead of STDOUT.")
@click.argument("container")
def export(output, container):
    """Export a container's filesystem as a tar archive."""
    from ketch.engine import containers, images
    conn = _conn()
    c = containers.lookup(conn, container)
    if not output and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or "
                              "redirect")
    if output:
        with open(output, "wb") as f:
            images.export_rootfs(conn, c.id, f)
    else:
        images.export_rootfs(conn, c.id, sys.stdout.buffer)


STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
                 "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
STATS_DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                 "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")


@click.command(cls=DockerCommand, context_settings=CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers.")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats, one result only.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", default=None, help="Format output (Go template, table, json).")
@click.argument("names", nargs=-1)
def stats(all_, no_stream, no_trunc, fmt, names):
    """Display a live stream of container(s) resource usage statistics."""
    from ketch.cli import _format
    from ketch.engine import containers
    from ketch.engine import stats as engine_stats
    conn = _conn()
    if names:
        cs = [containers.lookup(conn, n) for n in names]
        for c in cs:
            if c.status != "running":
                raise Conflict(f"container {c.id} is not running")
    else:
        cs = [c for c in containers.all_containers(conn) if c.status == "running"]
    prev = {c.id: engine_stats.sample(c) for c in cs}
    while True:
        time.sleep(1 if not no_stream else 0.5)
        rows = []
        for c in cs:
            cur = engine_stats.sample(c)
            rows.append(engine_stats.report(c, prev[c.id], cur))
            prev[c.id] = cur
        out = _format.format_items(rows, fmt, STATS_HEADERS, STATS_DEFAULT)
        if not no_stream and sys.stdout.isatty():
            click.echo("\x1b[2J\x1b[H", nl=False)
        click.echo(out, nl=False)
        if no_stream:
            return
