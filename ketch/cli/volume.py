"""`ketch volume create|ls|inspect|rm|prune`: named volumes (the local driver)."""

from __future__ import annotations

import json

import click

from ketch.cli._exit import DockerCommand
from ketch.errors import KetchError

CTX = {"allow_interspersed_args": False}


def _conn():
    from ketch.engine import volumes
    return volumes.connect()


@click.group(context_settings=CTX)
def volume():
    """Manage volumes."""


volume.command_class = DockerCommand


@volume.command("create")
@click.option("-d", "--driver", default="local", help="Volume driver name.")
@click.option("--label", multiple=True, help="Set metadata for a volume.")
@click.option("-o", "--opt", multiple=True, help="Driver options (none for local).")
@click.argument("name", required=False, default="")
def create(driver, label, opt, name):
    """Create a volume."""
    from ketch.engine import options, volumes
    if opt:
        raise KetchError("the local driver takes no options here")
    v = volumes.create(_conn(), name, options.parse_labels(list(label)), driver)
    click.echo(v["Name"])


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names.")
@click.option("--format", "fmt", default=None, help="Format output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (dangling=, name=).")
def ls(quiet, fmt, filters):
    """List volumes."""
    from ketch.cli import _format
    from ketch.engine import volumes
    conn = _conn()
    items = volumes.all_volumes(conn)
    for f in filters:
        key, _, val = f.partition("=")
        if key == "name":
            items = [v for v in items if val in v["Name"]]
        elif key == "dangling":
            want = val in ("true", "1")
            items = [v for v in items if (not volumes.users(conn, v["Name"])) == want]
        else:
            raise KetchError(f"invalid filter '{key}'")
    if quiet:
        click.echo("".join(v["Name"] + "\n" for v in items), nl=False)
        return
    click.echo(_format.format_items(items, fmt, {"Driver": "DRIVER", "Name": "VOLUME NAME"},
                                    "table {{.Driver}}\t{{.Name}}"), nl=False)


@volume.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="Format output.")
@click.argument("names", nargs=-1, required=True)
def inspect(fmt, names):
    """Display detailed information on one or more volumes."""
    from ketch.cli import _format
    from ketch.engine import volumes
    conn = _conn()
    docs = [volumes.get(conn, n) for n in names]
    if fmt:
        for d in docs:
            click.echo(_format.render(fmt, d))
    else:
        click.echo(json.dumps(docs, indent=4))


@volume.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes.")
@click.argument("names", nargs=-1, required=True)
def rm(force, names):
    """Remove one or more volumes."""
    from ketch.engine import volumes
    conn = _conn()
    rc = 0
    for n in names:
        try:
            volumes.remove(conn, n, force=force)
            click.echo(n)
        except KetchError as exc:
            click.echo(f"ketch: {exc}", err=True)
            rc = 1
    if rc:
        raise SystemExit(rc)


@volume.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
def prune(all_, force):
    """Remove unused local volumes (anonymous ones unless --all)."""
    from ketch.engine import volumes
    gone = volumes.prune(_conn(), all_)
    if gone:
        click.echo("Deleted Volumes:\n" + "".join(g + "\n" for g in gone))
    click.echo("Total reclaimed space: 0B")
