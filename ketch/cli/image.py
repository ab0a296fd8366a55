"""Image commands: images, image ls/inspect/prune/rm/tag/history/save/load/import,
tag, rmi, history, save, load, import, bootstrap. argv -> engine.images -> output.

Declared with cli/argv.py, so they run without importing click; the `image`
group and the click form of each command are built only when click runs
(`--help`, and `image prune`, whose prompt is click's).
"""

from __future__ import annotations

import json
import sys

from ketch.cli import _format
from ketch.cli._format import echo
from ketch.cli.argv import Commands, argument, option
from ketch.errors import InvalidArgument, KetchError, NotFound

# Declared with cli/argv.py: parsed without click; `ketch.cli.image:images` &c.
# (COMMANDS, the `image` group) are click commands built from these on first use.
FAST = Commands()

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


def _engine():
    from ketch.engine import images

    return images


# -- images ----------------------------------------------------------------------
@FAST.command("images")
@argument("repository", required=False)
@option("-a", "--all", "show_all", is_flag=True, help="Show all images (default hides intermediate images).")
@option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@option("--digests", is_flag=True, help="Show digests.")
@option("--no-trunc", is_flag=True, help="Don't truncate output.")
@option("-f", "--filter", "filters", multiple=True, help="Filter output (dangling=, reference=, label=, before=, since=).")
@option("--format", "fmt", default=None, help="Format output: table, json, or a Go template.")
def _images(repository, show_all, quiet, digests, no_trunc, filters, fmt):
    """List images."""
    filters = list(filters) + ([f"reference={repository}"] if repository else [])
    rows = _engine().list_rows(_conn(), show_all, filters)
    if quiet:
        ids = [r["ID"] if no_trunc else _format.truncate_id(r["ID"]) for r in rows]
        echo("".join(i + "\n" for i in dict.fromkeys(ids)), nl=False)  # once each
        return
    items = [_image_item(r, no_trunc) for r in rows]
    default = IMAGES_DIGESTS if digests else IMAGES_DEFAULT
    if fmt in (None, "", "table"):
        cols = ["Repository", "Tag"] + (["Digest"] if digests else []) + [
            "ID", "CreatedSince", "Size"]
        echo(_format.fields_table(items, cols, IMAGES_HEADERS), nl=False)
        return
    echo(_format.format_items(items, fmt, IMAGES_HEADERS, default), nl=False)


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
                echo(f"{short}: {verb}", err=True)
            return
        if short not in self.tasks:
            self.tasks[short] = self.rich.add_task(f"{short}: {verb}", total=total or None)
        self.rich.update(self.tasks[short], description=f"{short}: {verb}",
                         completed=done, total=total or None)


# -- inspect / history -------------------------------------------------------------
@FAST.command("inspect")
@argument("names", nargs=-1, required=True)
@option("-f", "--format", "fmt", default=None, help="Format output with a Go template.")
def _inspect(names, fmt):
    """Display detailed information on one or more images."""
    conn, found, missing = _conn(), [], []
    for name in names:
        try:
            found.append(_engine().inspect(conn, name))
        except NotFound:
            missing.append(name)
    if fmt:
        echo(_format.format_items(found, fmt, {}, fmt), nl=False)
    else:
        echo(json.dumps(found, indent=4))
    if missing:
        raise NotFound(f"No such image: {missing[0]}", exit_code=1)


@FAST.command("history")
@argument("name")
@option("-H", "--human", type=bool, default=True, help="Print sizes and dates in human readable format.")
@option("--no-trunc", is_flag=True, help="Don't truncate output.")
@option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@option("--format", "fmt", default=None, help="Format output: table, json, or a Go template.")
def _history(name, human, no_trunc, quiet, fmt):
    """Show the history of an image."""
    from ketch.image.views import docker_time

    rows = _engine().history(_conn(), name)
    if quiet:
        echo("".join((r["ID"] if no_trunc or r["ID"] == "<missing>" else
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
    echo(_format.format_items(items, fmt, HISTORY_HEADERS, HISTORY_DEFAULT), nl=False)


# -- names -----------------------------------------------------------------------
@FAST.command("tag")
@argument("source")
@argument("target")
def _tag(source, target):
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    _engine().tag(_conn(), source, target)


@FAST.command("rmi")
@argument("names", nargs=-1, required=True)
@option("-f", "--force", is_flag=True, help="Force removal of the image.")
@option("--no-prune", is_flag=True, help="Do not delete untagged parents (accepted).")
def _rmi(names, force, no_prune):
    """Remove one or more images."""
    conn, failed = _conn(), None
    for name in names:
        try:
            for line in _engine().remove(conn, [name], force):
                for k, v in line.items():
                    echo(f"{k}: {v}")
        except KetchError as exc:
            echo(f"ketch: {exc}", err=True)
            failed = exc
    if failed is not None:
        sys.exit(1)


@FAST.command("prune")
@option("-a", "--all", "all_images", is_flag=True, help="Remove all unused images, not just dangling ones.")
@option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@option("--filter", "filters", multiple=True, help="Accepted for compatibility; not supported.")
def _prune(all_images, force, filters):
    """Remove unused images."""
    if filters:
        raise InvalidArgument("image prune: --filter is not supported")
    if not force:
        what = ("all images without at least one container associated to them"
                if all_images else "all dangling images")
        echo(f"WARNING! This will remove {what}.")
        import click  # the prompt only: this path is interactive anyway

        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    report, freed = _engine().prune(_conn(), all_images)
    if report:
        echo("Deleted Images:")
        for line in report:
            for k, v in line.items():
                echo(f"{k.lower()}: {v}")
        echo()
    echo(f"Total reclaimed space: {_format.human_size(freed)}")


# -- bootstrap -------------------------------------------------------------------
@FAST.command("bootstrap")
@argument("base")
@option("--include", default="", help="Extra packages, comma separated (debian only).")
@option("--tag", "-t", "name", default=None, help="Name the image (default: BASE).")
@option("--mirror", default=None, help="Debian mirror (default: the host's apt sources).")
@option("--quiet", "-q", is_flag=True, help="Print only the image ID.")
def _bootstrap(base: str, include: str, name: str | None, mirror: str | None,
              quiet: bool) -> None:
    """Build a base image without a registry: busybox, or debian:<suite>."""
    pkgs = [p for p in include.split(",") if p]
    if not quiet and base.startswith("debian"):
        # mmdebstrap takes a minute or more and prints nothing meanwhile.
        echo(f"Bootstrapping {base} with mmdebstrap --variant=minbase from "
             f"{mirror or 'the host apt sources'} ...", err=True)
    rec = _engine().bootstrap(_conn(), base, pkgs, name, mirror)
    if quiet:
        echo(rec.id)
    else:
        echo(f"{', '.join(rec.repo_tags)}: {rec.id} ({_format.human_size(rec.size)})")


# -- save / load / import ----------------------------------------------------------
@FAST.command("save")
@argument("names", nargs=-1, required=True)
@option("-o", "--output", default=None, help="Write to a file, instead of STDOUT.")
def _save(names, output):
    """Save one or more images to a tar archive (OCI layout and docker-archive in one)."""
    if output is None and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. "
                              "Use the -o flag or redirect")
    conn = _conn()
    if output is None:
        _engine().save(conn, list(names), sys.stdout.buffer)
        return
    import os

    tmp = f"{output}.ketch-tmp"
    try:
        with open(tmp, "wb") as f:
            _engine().save(conn, list(names), f)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@FAST.command("load")
@option("-i", "--input", "source", default=None, help="Read from a tar archive file (or OCI layout directory), instead of STDIN.")
@option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
def _load(source, quiet):
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
            lines = _engine().load(_conn(), path, progress)
        for line in lines:
            echo(line)
    finally:
        if source is None:
            os.unlink(path)


@FAST.command("import")
@argument("source")
@argument("repository", required=False)
@option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image.")
@option("-m", "--message", default="", help="Set commit message for imported image.")
@option("--platform", default=None, help="Set platform (os/arch) of the imported image.")
def _import(source, repository, changes, message, platform):
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
        rec = _engine().import_(_conn(), stream, shown, repository, list(changes), message,
                                platform)
    echo(rec.id)


# -- the `image` group -------------------------------------------------------------
# name in the `image` group -> command of FAST
IMAGE_GROUP = {"ls": "images", "list": "images", "inspect": "inspect", "prune": "prune",
               "rm": "rmi", "remove": "rmi", "tag": "tag", "history": "history",
               "save": "save", "load": "load", "import": "import"}


def _image_group():
    import click

    group = click.Group("image", help="Manage images.")
    for alias, name in IMAGE_GROUP.items():
        group.add_command(FAST[name].click(), alias)
    # The VM disk -> image direction ("lift and shift"); also `ketch vm import-disk`.
    from ketch.cli.vm import import_disk
    group.add_command(import_disk, "import-disk")
    return group


def __getattr__(name: str):
    """Click commands (`images`, `import_`, the `image` group), built on first use."""
    if name == "image":
        globals()["image"] = group = _image_group()
        return group
    return FAST.click(name.rstrip("_"))
