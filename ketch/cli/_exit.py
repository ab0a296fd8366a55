"""Docker's exit codes outside `run`/`create`: a daemon-side error exits 1, not 125.

`docker rm`, `stop`, `exec` on a stopped container, `inspect` ... print the
error and exit 1; 125 belongs to `run`/`create` (and to bad flags, which the
parser reports before any command runs); 126/127 stay what the command could
not do. The rule is `docker_exit_code()`, used by the click-free commands of
cli/argv.py and by DockerCommand (built on first use, so importing this module
does not import click).
"""

from __future__ import annotations

import os

from ketch.errors import ExecError, KetchError


def docker_exit_code(exc: KetchError) -> int | None:
    """1 for an engine error; None where the error keeps its own code (exec, --debug)."""
    if isinstance(exc, ExecError) or os.environ.get("KETCH_DEBUG"):
        return None
    return 1


def _docker_command():
    import sys

    import click

    class DockerCommand(click.Command):
        def invoke(self, ctx: click.Context):
            try:
                return super().invoke(ctx)
            except KetchError as exc:
                code = docker_exit_code(exc)
                if code is None:
                    raise
                click.echo(f"ketch: {exc}", err=True)
                sys.exit(code)
    return DockerCommand


def __getattr__(name: str):
    if name == "DockerCommand":
        globals()[name] = cls = _docker_command()
        return cls
    raise AttributeError(name)
