"""Docker's exit codes outside `run`/`create`: a daemon-side error exits 1, not 125.

`docker rm`, `stop`, `exec` on a stopped container, `inspect` ... print the
error and exit 1; 125 belongs to `run`/`create` (and to bad flags, which click
reports before any command runs); 126/127 stay what the command could not do.
"""

from __future__ import annotations

import os
import sys

import click

from ketch.errors import ExecError, KetchError


class DockerCommand(click.Command):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KetchError as exc:
            if isinstance(exc, ExecError) or os.environ.get("KETCH_DEBUG"):
                raise
            click.echo(f"ketch: {exc}", err=True)
            sys.exit(1)
