"""The `ketch` command: argv -> Options -> engine -> rendered Report.

Commands live in one module per group and are imported only when invoked,
so `ketch --help` and `ketch run` load nothing they do not use. Each entry
of COMMANDS maps a command name to "module:attribute" of a click command.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from ketch import __version__
from ketch.errors import KetchError

# name -> "module:attr".  One module per command group (see DESIGN.md, cli/).
COMMANDS: dict[str, str] = {
    # containers (cli/container.py)
    "run": "ketch.cli.container:run",
    "create": "ketch.cli.container:create",
    "start": "ketch.cli.container:start",
    "stop": "ketch.cli.container:stop",
    "restart": "ketch.cli.container:restart",
    "kill": "ketch.cli.container:kill",
    "rm": "ketch.cli.container:rm",
    "ps": "ketch.cli.container:ps",
    "logs": "ketch.cli.container:logs",
    "exec": "ketch.cli.container:exec_",
    "attach": "ketch.cli.container:attach",
    "inspect": "ketch.cli.container:inspect",
    "wait": "ketch.cli.container:wait",
    "top": "ketch.cli.container:top",
    "stats": "ketch.cli.container:stats",
    "cp": "ketch.cli.container:cp",
    "diff": "ketch.cli.container:diff",
    "commit": "ketch.cli.container:commit",
    "export": "ketch.cli.container:export",
    "port": "ketch.cli.container:port",
    "pause": "ketch.cli.container:pause",
    "unpause": "ketch.cli.container:unpause",
    "rename": "ketch.cli.container:rename",
    "update": "ketch.cli.container:update",
    "container": "ketch.cli.container:container",
    # volumes and the system (cli/volume.py, cli/system.py)
    "volume": "ketch.cli.volume:volume",
    "system": "ketch.cli.system:system",
    "info": "ketch.cli.system:info",
    "version": "ketch.cli.system:version",
    "events": "ketch.cli.system:events",
    # images (cli/image.py)
    "images": "ketch.cli.image:images",
    "image": "ketch.cli.image:image",
    "pull": "ketch.cli.distribution:pull",
    "push": "ketch.cli.distribution:push",
    "tag": "ketch.cli.image:tag",
    "rmi": "ketch.cli.image:rmi",
    "history": "ketch.cli.image:history",
    "save": "ketch.cli.image:save",
    "load": "ketch.cli.image:load",
    "import": "ketch.cli.image:import_",
    "login": "ketch.cli.distribution:login",
    "logout": "ketch.cli.distribution:logout",
    "bootstrap": "ketch.cli.image:bootstrap",
    # pull/push/login/logout live in cli/distribution.py (the registry client)
    # networks (cli/network.py)
    "network": "ketch.cli.network:network",
    # micro-VMs and full VMs (cli/vm.py)
    "vm": "ketch.cli.vm:vm",
    # the containers-vs-VMs benchmark (cli/bench.py)
    "bench": "ketch.cli.bench:bench",
}


def _load(name: str) -> click.Command | None:
    target = COMMANDS.get(name)
    if target is None:
        return None
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    return getattr(mod, attr, None)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return _load(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing must not import every command module: show names only.
        names = [n for n in self.list_commands(ctx) if n in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_text(", ".join(names))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="ketch",
                      message="ketch version %(version)s")
@click.option("--debug", "-D", is_flag=True, help="Show tracebacks and debug output.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """ketch: run OCI images as containers or micro-VMs."""
    ctx.obj = {"debug": debug}
    if debug:
        os.environ["KETCH_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, mapping errors to Docker's exit codes and one line."""
    debug = bool(os.environ.get("KETCH_DEBUG")) or "--debug" in (argv or sys.argv) \
        or "-D" in (argv or sys.argv)[:3]
    try:
        rc = cli.main(args=argv, prog_name="ketch", standalone_mode=False)
    except KetchError as exc:
        if debug:
            raise
        click.echo(f"ketch: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("ketch: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        # Usage errors: Docker exits 125 for these.
        exc.show()
        sys.exit(125)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(141)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
