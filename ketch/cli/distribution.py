"""`ketch pull`, `push`, `login`, `logout`: Docker's flags, output and exit codes.

Progress: one rich bar per layer on a terminal; on a pipe, one plain line per
state change (Docker's words, no byte counters); nothing with -q.
"""

from __future__ import annotations

import sys
import threading

import click

from ketch.errors import InvalidArgument


class _Lines:
    """Plain progress: a line per change of a layer's state (thread-safe)."""

    _QUIET_STATES = {"Downloading", "Extracting", "Pushing"}

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, str] = {}

    def __call__(self, ev) -> None:
        with self.lock:
            if ev.status in self._QUIET_STATES or self.last.get(ev.id) == ev.status and ev.id:
                return
            self.last[ev.id] = ev.status
            click.echo(f"{ev.id}: {ev.status}" if ev.id else ev.status)

    def close(self) -> None:
        pass


class _Bars:
    """A rich bar per layer: bytes, speed, then Extracting / Pull complete."""

    _DONE = {"Download complete", "Pull complete", "Already exists", "Pushed",
             "Layer already exists"}

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), transient=False)
        self.tasks: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.lock = threading.Lock()
        self.progress.start()

    def __call__(self, ev) -> None:
        with self.lock:
            if not ev.id:
                self.progress.console.print(ev.status, highlight=False)
                return
            task = self.tasks.get(ev.id)
            if task is None:
                task = self.tasks[ev.id] = self.progress.add_task(ev.id, total=None)
            fields: dict = {"description": f"{ev.id}: {ev.status}"}
            if ev.total:
                self.totals[ev.id] = ev.total
                fields.update(total=ev.total, completed=ev.current)
            elif ev.status in self._DONE:
                total = self.totals.get(ev.id, 0)
                fields.update(completed=total, total=total)
            self.progress.update(task, **fields)

    def close(self) -> None:
        self.progress.stop()


def _renderer(quiet: bool):
    if quiet:
        return None
    return _Bars() if sys.stdout.isatty() else _Lines()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.option("--platform", default=None, help="Set platform if server is multi-platform capable.")
def pull(name: str, all_tags: bool, quiet: bool, platform: str | None) -> None:
    """Download an image from a registry."""
    from ketch.engine import distribution
    from ketch.oci import reference

    ref = reference.parse(name)
    if not all_tags and not ref.digest and ":" not in name.split("@")[0].rsplit("/", 1)[-1] \
            and not quiet:
        click.echo("Using default tag: latest")
    render = _renderer(quiet)
    try:
        reports = distribution.pull(name, platform=platform, all_tags=all_tags, progress=render)
    finally:
        if render:
            render.close()
    for rep in reports:
        if not quiet:
            short = reference.familiar(rep.reference)
            status = "Downloaded newer image for" if rep.downloaded else "Image is up to date for"
            click.echo(f"Status: {status} {short}")
        click.echo(rep.reference)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of the repository.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
def push(name: str, all_tags: bool, quiet: bool) -> None:
    """Upload an image to a registry."""
    from ketch.engine import distribution

    render = _renderer(quiet)
    try:
        if all_tags:
            reports = distribution.push_all_tags(name, progress=render)
        else:
            reports = [distribution.push(name, progress=render)]
    finally:
        if render:
            render.close()
    if quiet:
        for report in reports:
            click.echo(report.reference)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("server", required=False)
@click.option("-u", "--username", default="", help="Username.")
@click.option("-p", "--password", default="", help="Password.")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
def login(server: str | None, username: str, password: str, password_stdin: bool) -> None:
    """Log in to a registry (default: Docker Hub)."""
    from ketch.engine import distribution

    if password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
                   err=True)
    if not username and sys.stdin.isatty():
        username = click.prompt("Username")
    if not password and sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True)
    click.echo(distribution.login(server, username, password))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry (default: Docker Hub)."""
    from ketch.engine import distribution

    click.echo(distribution.logout(server))
