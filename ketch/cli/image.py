"""Image commands: images, image ls/inspect/prune/rm/tag/history/save/load/import,
tag, rmi, history, save, load, import, bootstrap. argv -> engine.images -> output."""

from __future__ import annotations

import json
import sys

import click

from ketch.cli import _format
from ketch.errors import InvalidArgument, KetchError, NotFound

IMAGES_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}"
                  "\t{{.Size}}")
IMAGES_HEADERS = {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                  "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "Size": "SIZE"}
HISTORY_DEFAULT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT", "CreatedAt": "CREATED AT"}


def _conn():
    from ketch.engine import db

    return db.connect()


def _images():
    from ketch.engine import images

    return images


# -- images ----------------------------------------------------------------------
@click.command("images")
@click.argument("repository", required=False)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all images (default hides intermediate images).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (dangling=, reference=, label=, before=, since=).")
@click.option("--format", "fmt", default=None, help="Format output: table, json, or a Go template.")
def images(repository, show_all, quiet, digests, no_trunc, filters, fmt):
    """List images."""
    filters = list(filters) + ([f"reference={repository}"] if repository else [])
    rows = _images().list_rows(_conn(), show_all, filters)
    if quiet:
        ids = [r["ID"] if no_trunc else _format.truncate_id(r["ID"]) for r in rows]
        click.echo("".join(i + "\n" for i in dict.fromkeys(ids)), nl=False)  # once each
        return
    items = [_image_item(r, no_trunc) for r in rows]
    default = IMAGES_DIGESTS if digests else IMAGES_DEFAULT
    if fmt in (None, "", "table"):
        # The default table without the template engine: same columns, less work.
        cols = ["Repository", "Tag"] + (["Digest"] if digests else []) + [
            "ID", "CreatedSince", "Size"]
        click.echo(_format.table(([i[c] for c in cols] for i in items),
                                 [IMAGES_HEADERS[c] for c in cols]), nl=False)
        return
    click.echo(_format.format_items(items, fmt, IMAGES_HEADERS, default), nl=False)


def _image_item(r: dict, no_trunc: bool) -> dict:
    from ketch.image.views import docker_time

    size = _format.human_size(r["Size"])
    return {"Repository": r["Repository"], "Tag": r["Tag"],
            "ID": r["ID"] if no_trunc else _format.truncate_id(r["ID"]),
            "Digest": r["Digest"],
            # Docker prints N/A for an image without a creation time.
            "CreatedSince": _format.ago(r["Created"]) if r["Created"] else "N/A",
            "CreatedAt": docker_time(r["Created"]), "Size": size, "VirtualSize": size,
            "SharedSize": "N/A", "UniqueSize": "N/A", "Containers": "N/A"}


# -- progress --------------------------------------------------------------------
class LayerProgress:
    """Per-layer progress: a rich bar per layer on a TTY (bytes, speed, what it is
    doing), plain lines on stderr otherwise, nothing with quiet. Callable as the
    `progress(event, blob, done, total)` hook of the image store."""

    VERBS = {"copy": "Copying", "download": "Downloading", "extract": "Extracting"}

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.rich = None
        self.tasks: dict[str, int] = {}
        self.last: dict[str, str] = {}

    def __enter__(self) -> LayerProgress:
        if not self.quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.rich = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(file=self.stream), transient=False)
            self.rich.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.rich is not None:
            self.rich.stop()

    def __call__(self, event: str, blob: str, done: int, total: int) -> None:
        if self.quiet:
            return
        short = blob.rsplit("/", 1)[-1].split(":")[-1][:12]
        verb = self.VERBS.get(event, {"done": "Pull complete" if event == "pulled" else
                                      "Extracted", "exists": "Already exists"}.get(event, event))
        if self.rich is None:
            if self.last.get(short) != verb:   # one line per phase change, not per chunk
                self.last[short] = verb
                click.echo(f"{short}: {verb}", err=True)
            return
        if short not in self.tasks:
            self.tasks[short] = self.rich.add_task(f"{short}: {verb}", total=total or None)
        self.rich.update(self.tasks[short], description=f"{short}: {verb}",
                         completed=done, total=total or None)


# -- inspect / history -------------------------------------------------------------
@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None, help="Format output with a Go template.")
def inspect(names, fmt):
    """Display detailed information on one or more images."""
    conn, found, missing = _conn(), [], []
    for name in names:
        try:
            found.append(_images().inspect(conn, name))
        except NotFound:
            missing.append(name)
    if fmt:
        click.echo(_format.format_items(found, fmt, {}, fmt), nl=False)
    else:
        click.echo(json.dumps(found, indent=4))
    if missing:
        raise NotFound(f"No such image: {missing[0]}", exit_code=1)


@click.command("history")
@click.argument("name")
@click.option("-H", "--human", type=bool, default=True, help="Print sizes and dates in human readable format.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--format", "fmt", default=None, help="Format output: table, json, or a Go template.")
def history(name, human, no_trunc, quiet, fmt):
    """Show the history of an image."""
    from ketch.image.views import docker_time

    rows = _images().history(_conn(), name)
    if quiet:
        click.echo("".join((r["ID"] if no_trunc or r["ID"] == "<missing>" else
                            _format.truncate_id(r["ID"])) + "\n" for r in rows), nl=False)
        return
    items = []
    for r in rows:
        by = r["CreatedBy"]
        if not no_trunc and len(by) > 45:
            by = by[:44] + "…"
        items.append({
            "ID": r["ID"] if no_trunc or r["ID"] == "<missing>" else _format.truncate_id(r["ID"]),
            "CreatedSince": _format.ago(r["Created"]) if human else docker_time(r["Created"]),
            "CreatedAt": docker_time(r["Created"]), "CreatedBy": by,
            "Size": _format.human_size(r["Size"]) if human else str(r["Size"]),
            "Comment": r["Comment"]})
    if fmt == "table":
        fmt = HISTORY_DEFAULT
    click.echo(_format.format_items(items, fmt, HISTORY_HEADERS, HISTORY_DEFAULT), nl=False)


# -- names -----------------------------------------------------------------------
@click.command("tag")
@click.argument("source")
@click.argument("target")
def tag(source, target):
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    _images().tag(_conn(), source, target)


@click.command("rmi")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents (accepted).")
def rmi(names, force, no_prune):
    """Remove one or more images."""
    conn, failed = _conn(), None
    for name in names:
        try:
            for line in _images().remove(conn, [name], force):
                for k, v in line.items():
                    click.echo(f"{k}: {v}")
        except KetchError as exc:
            click.echo(f"ketch: {exc}", err=True)
            failed = exc
    if failed is not None:
        sys.exit(1)


@click.command("prune")
@click.option("-a", "--all", "all_images", is_flag=True, help="Remove all unused images, not just dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Accepted for compatibility; not supported.")
def prune(all_images, force, filters):
    """Remove unused images."""
    if filters:
        raise InvalidArgument("image prune: --filter is not supported")
    if not force:
        what = ("all images without at least one container associated to them"
                if all_images else "all dangling images")
        click.echo(f"WARNING! This will remove {what}.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    report, freed = _images().prune(_conn(), all_images)
    if report:
        click.echo("Deleted Images:")
        for line in report:
            for k, v in line.items():
                click.echo(f"{k.lower()}: {v}")
        click.echo()
    click.echo(f"Total reclaimed space: {_format.human_size(freed)}")


# -- bootstrap -------------------------------------------------------------------
@click.command("bootstrap")
@click.argument("base")
@click.option("--include", default="", help="Extra packages, comma separated (debian only).")
@click.option("--tag", "-t", "name", default=None, help="Name the image (default: BASE).")
@click.option("--mirror", default=None, help="Debian mirror (default: the host's apt sources).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the image ID.")
def bootstrap(base: str, include: str, name: str | None, mirror: str | None,
              quiet: bool) -> None:
    """Build a base image without a registry: busybox, or debian:<suite>."""
    pkgs = [p for p in include.split(",") if p]
    if not quiet and base.startswith("debian"):
        # mmdebstrap takes a minute or more and prints nothing meanwhile.
        click.echo(f"Bootstrapping {base} with mmdebstrap --variant=minbase from "
                   f"{mirror or 'the host apt sources'} ...", err=True)
    rec = _images().bootstrap(_conn(), base, pkgs, name, mirror)
    if quiet:
        click.echo(rec.id)
    else:
        click.echo(f"{', '.join(rec.repo_tags)}: {rec.id} ({_format.human_size(rec.size)})")


# -- save / load / import ----------------------------------------------------------
@click.command("save")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT.")
def save(names, output):
    """Save one or more images to a tar archive (OCI layout and docker-archive in one)."""
    if output is None and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. "
                              "Use the -o flag or redirect")
    conn = _conn()
    if output is None:
        _images().save(conn, list(names), sys.stdout.buffer)
        return
    import os

    tmp = f"{output}.ketch-tmp"
    try:
        with open(tmp, "wb") as f:
            _images().save(conn, list(names), f)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@click.command("load")
@click.option("-i", "--input", "source", default=None, help="Read from a tar archive file (or OCI layout directory), instead of STDIN.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
def load(source, quiet):
    """Load images from a tar archive or STDIN."""
    import os
    from pathlib import Path

    from ketch.image import archive

    if source is None and sys.stdin.isatty():
        raise InvalidArgument("requested load from stdin, but stdin is empty")
    path = Path(source) if source else archive.spool(sys.stdin.buffer)
    try:
        if source and not path.exists():
            raise NotFound(f"open {source}: no such file or directory")
        with LayerProgress(quiet) as progress:
            lines = _images().load(_conn(), path, progress)
        for line in lines:
            click.echo(line)
    finally:
        if source is None:
            os.unlink(path)


@click.command("import")
@click.argument("source")
@click.argument("repository", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image.")
@click.option("-m", "--message", default="", help="Set commit message for imported image.")
@click.option("--platform", default=None, help="Set platform (os/arch) of the imported image.")
def import_(source, repository, changes, message, platform):
    """Import the contents from a tarball to create a filesystem image."""
    if source == "-":
        stream, shown = sys.stdin.buffer, "-"
    elif source.startswith(("http://", "https://")):
        import urllib.request

        try:
            stream = urllib.request.urlopen(source, timeout=60)  # noqa: S310 - user's URL
        except OSError as exc:
            raise NotFound(f"import: fetch {source}: {exc}") from None
        shown = source
    else:
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise NotFound(f"open {source}: {exc.strerror.lower()}") from None
        shown = "-"  # Docker's comment for a local file sent as a stream
    with stream:
        rec = _images().import_(_conn(), stream, shown, repository, list(changes), message,
                                platform)
    click.echo(rec.id)


# -- the `image` group -------------------------------------------------------------
@click.group("image")
def image():
    """Manage images."""


image.add_command(images, "ls")
image.add_command(images, "list")
image.add_command(inspect, "inspect")
image.add_command(prune, "prune")
image.add_command(rmi, "rm")
image.add_command(rmi, "remove")
image.add_command(tag, "tag")
image.add_command(history, "history")
image.add_command(save, "save")
image.add_command(load, "load")
image.add_command(import_, "import")
