"""Image commands: images, image ls/inspect/prune/rm/tag/history/save/load/import,
tag, rmi, history, save, load, import, bootstrap. argv -> engine.images -> output."""

from __future__ import annotations

import click

from ketch.cli import _format


def _conn():
    from ketch.engine import db

    return db.connect()


@click.command("bootstrap")
@click.argument("base")
@click.option("--include", default="", help="Extra packages, comma separated (debian only).")
@click.option("--tag", "-t", "name", default=None, help="Name the image (default: BASE).")
@click.option("--mirror", default=None, help="Debian mirror (default: the host's apt sources).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the image ID.")
def bootstrap(base: str, include: str, name: str | None, mirror: str | None,
              quiet: bool) -> None:
    """Build a base image without a registry: busybox, or debian:<suite>."""
    from ketch.engine import images

    pkgs = [p for p in include.split(",") if p]
    rec = images.bootstrap(_conn(), base, pkgs, name, mirror)
    if quiet:
        click.echo(rec.id)
    else:
        click.echo(f"{', '.join(rec.repo_tags)}: {rec.id} ({_format.human_size(rec.size)})")
