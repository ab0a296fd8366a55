"""The `ketch` command: argv -> Options -> engine -> rendered Report.

Commands live in one module per group and are imported only when invoked,
so `ketch --help` and `ketch run` load nothing they do not use. Each entry
of COMMANDS maps a command name to "module:attribute" of a click command.

The hot commands (FAST: ps, images, run, create ...) are declared with
cli/argv.py and parsed without importing click at all; click is loaded only
for the others and for `--help` of a command.
"""

from __future__ import annotations

import os
import sys

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


# argv words -> "module:name" in that module's argv.Commands registry (FAST).
FAST: dict[str, str] = {
    "ps": "ketch.cli.container:ps", "container ls": "ketch.cli.container:ps",
    **{n: f"ketch.cli.container:{n}" for n in
       ("start", "stop", "restart", "kill", "rm", "wait", "inspect")},
    "run": "ketch.cli.container_run:run", "create": "ketch.cli.container_run:create",
    "container run": "ketch.cli.container_run:run",
    "container create": "ketch.cli.container_run:create",
    "images": "ketch.cli.image:images", "image ls": "ketch.cli.image:images",
    "image list": "ketch.cli.image:images",
    **{n: f"ketch.cli.image:{n}" for n in
       ("tag", "rmi", "history", "save", "load", "import", "bootstrap")},
    **{f"image {n}": f"ketch.cli.image:{n}" for n in
       ("inspect", "tag", "history", "save", "load", "import")},
    "image rm": "ketch.cli.image:rmi", "image remove": "ketch.cli.image:rmi",
}

HELP = "ketch: run OCI images as containers or micro-VMs."
_OPTIONS = ("  -v, --version  Show the version and exit.\n"
            "  -D, --debug    Show tracebacks and debug output.\n"
            "  -h, --help     Show this message and exit.\n")


def _load(name: str):
    target = COMMANDS.get(name)
    if target is None:
        return None
    import importlib

    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    return getattr(mod, attr, None)


def _top_help() -> str | None:
    """`ketch --help` as click renders it (same width rule), without importing click;
    None on a terminal too narrow for the description's line (click wraps it)."""
    try:
        cols = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(1).columns
    except (ValueError, OSError):
        cols = 80
    width = max(min(cols, 80) - 2, 50) - 2
    if width < len(HELP):
        return None
    lines, line = [], ""
    for word in ", ".join(sorted(COMMANDS)).split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return (f"Usage: ketch [OPTIONS] COMMAND [ARGS]...\n\n  {HELP}\n\nOptions:\n{_OPTIONS}"
            "\nCommands:\n" + "".join(f"  {x}\n" for x in lines))


def _fast(args: list[str]) -> int | None:
    """Run a FAST command without click; None if argv is not one (click takes it)."""
    i = 0
    while i < len(args) and args[i] in ("-D", "--debug"):
        os.environ["KETCH_DEBUG"] = "1"   # what the click group's callback does
        i += 1
    if i == len(args):
        return None
    if args[i] in ("-v", "--version"):
        sys.stdout.write(f"ketch version {__version__}\n")
        return 0
    if args[i] in ("-h", "--help"):
        text = _top_help()
        if text is not None:
            sys.stdout.write(text)
        return None if text is None else 0
    path = " ".join(args[i:i + 2])
    if path not in FAST:
        path = args[i]
        if path not in FAST:
            return None
    module, _, name = FAST[path].partition(":")
    cmd = __import__(module, fromlist=["FAST"]).FAST[name]
    from ketch.cli import argv
    try:
        kwargs = argv.parse(cmd, args[i + path.count(" ") + 1:], path)
    except argv.HelpRequested:
        return None
    except argv.UsageError as exc:
        hint = f"\n\nUsage:  ketch {path} {cmd.usage()}\n\n{cmd.help}" if exc.usage else ""
        sys.stderr.write(f"{exc}\nSee 'ketch {path} --help'.{hint}\n")
        return 125
    try:
        rc = cmd.fn(**kwargs)
    except KetchError as exc:
        if os.environ.get("KETCH_DEBUG"):
            raise
        from ketch.cli._exit import docker_exit_code
        code = docker_exit_code(exc) if cmd.docker_exit else None
        sys.stderr.write(f"ketch: {exc}\n")
        return code or exc.exit_code
    return rc if isinstance(rc, int) else 0


def _build_cli():
    """The click group for every command not in FAST (and for `--help` of those)."""
    import click

    class LazyGroup(click.Group):
        """A group whose subcommands are imported on first use."""

        def list_commands(self, ctx: click.Context) -> list[str]:
            return sorted(COMMANDS)

        def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
            return _load(name)

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            # Listing must not import every command module: show names only.
            with formatter.section("Commands"):
                formatter.write_text(", ".join(self.list_commands(ctx)))

    @click.group(cls=LazyGroup, help=HELP,
                 context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "-v", "--version", prog_name="ketch",
                          message="ketch version %(version)s")
    @click.option("--debug", "-D", is_flag=True, help="Show tracebacks and debug output.")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool) -> None:
        ctx.obj = {"debug": debug}
        if debug:
            os.environ["KETCH_DEBUG"] = "1"
    return cli


def _click_main(argv: list[str] | None, debug: bool):
    import click

    cli = _build_cli()
    try:
        return cli.main(args=argv, prog_name="ketch", standalone_mode=False)
    except KetchError as exc:
        if debug:
            raise
        click.echo(f"ketch: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("ketch: aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoSuchOption as exc:
        # Docker's wording, as the FAST commands print it.
        path, name = exc.ctx.command_path if exc.ctx else "ketch", exc.option_name
        what = f"flag: {name}" if name.startswith("--") else \
            f"shorthand flag: '{name[1:]}' in {name}"
        click.echo(f"unknown {what}\nSee '{path} --help'.", err=True)
        sys.exit(125)
    except click.ClickException as exc:
        # Usage errors: Docker exits 125 for these.
        exc.show()
        sys.exit(125)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, mapping errors to Docker's exit codes and one line."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = bool(os.environ.get("KETCH_DEBUG")) or "--debug" in args or "-D" in args[:2]
    try:
        rc = _fast(args)
        if rc is None:
            rc = _click_main(argv, debug)
    except BrokenPipeError:
        sys.exit(141)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
