"""`ketch bench`: measure containers against VMs on this machine.

argv -> bench.suite.Options -> suite.run() -> a table (rich on a TTY, plain
text otherwise), or JSON with --json; --out DIR also writes report.md,
report.json and PNG charts. rich and matplotlib are imported only when they
draw something.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from ketch.errors import InvalidArgument


def parse_size(text: str) -> int:
    """'4g', '512m', '1.5GiB' -> bytes; InvalidArgument otherwise."""
    from ketch.engine.options import size_in_bytes

    size = size_in_bytes(text or "")
    if size is None:
        raise InvalidArgument(f"invalid size {text!r} for --budget (use e.g. 512m, 4g)")
    return size


class _Progress:
    """A rich progress bar on a TTY; plain `bench [i/n]: ...` lines on stderr otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = self.task = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"),
                                TimeElapsedColumn(), console=Console(stderr=True),
                                transient=True)
            self.task = self.bar.add_task("ketch bench", total=None)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, msg: str, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=msg, completed=done, total=total)
        elif not self.quiet:
            try:
                click.echo(f"bench [{done + 1}/{total}]: {msg}", err=True)
            except OSError:
                self.quiet = True  # stderr went away; the run still cleans up


@click.command("bench")
@click.option("--quick", "mode", flag_value="quick", default=True,
              help="Few runs, small workloads (default); VMs get fewer starts; the full "
                   "VM only if named. ~3.5 min on a 2-core TCG host.")
@click.option("--full", "mode", flag_value="full", help="The whole set: more runs, larger workloads.")
@click.option("-n", "--runs", type=click.IntRange(min=1), default=None,
              help="Timed starts per runtime (default: quick 3, VMs 2; full 10, VMs 5).")
@click.option("--runtimes", default="",
              help="Comma list: container, vm (micro-VM), fullvm, runc, podman, docker.")
@click.option("--only", default="",
              help="Comma list of measurements: start, http, memory (with disk), workload "
                   "(CPU and I/O). Default: all.")
@click.option("--json", "as_json", is_flag=True, help="Print raw samples and summaries as JSON.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write report.md, report.json and PNG charts into this directory.")
@click.option("--budget", default=None, help="Memory budget for density (default: MemAvailable).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              hidden=True, help="Where the run keeps its private roots.")
@click.option("--keep", is_flag=True, hidden=True, help="Keep the work directory.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def bench(mode, runs, runtimes, only, as_json, out_dir, budget, workdir, keep, quiet):
    """Measure start time, memory, disk, CPU and I/O of containers and VMs here."""
    from ketch.bench import report, suite

    opts = suite.Options(
        mode=mode, runs=runs, keep=keep, workdir=workdir,
        runtimes=[r.strip() for r in runtimes.split(",") if r.strip()] or None,
        budget=parse_size(budget) if budget else None,
        only=[g.strip() for g in only.split(",") if g.strip()] or None)
    opts.selected()  # reject unknown names before starting anything
    opts.groups()
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(f"--out {str(out_dir)!r}: {exc.strerror}") from exc
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the run removes what it started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    with _Progress(quiet) as progress:
        result = suite.run(opts, progress)
    data = result.to_dict()
    if out_dir is not None:
        _write_out(result, data, out_dir)
    if as_json:
        click.echo(json.dumps(data, indent=1))
    elif sys.stdout.isatty():
        from rich.console import Console
        report.render_rich(result, Console())
    else:
        click.echo(report.render_text(result), nl=False)
    if out_dir is not None and not as_json:
        click.echo(f"wrote {out_dir}/report.md, report.json and charts")


def _interrupt(signo, _frame):
    raise KeyboardInterrupt(f"signal {signo}")


def _write_out(result, data: dict, out_dir: Path) -> None:
    from ketch.bench import report

    (out_dir / "report.json").write_text(json.dumps(data, indent=1) + "\n")
    try:
        from ketch.bench.charts import write_charts
        charts = write_charts(result, out_dir)
    except ImportError as exc:
        click.echo(f"ketch: bench: no charts: {exc}", err=True)
        charts = []
    (out_dir / "report.md").write_text(report.render_markdown(result, charts))
