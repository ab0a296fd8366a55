"""`ketch start`, `stop`, `restart`, `kill`, `rm`, `ps`, `wait`, `inspect`.

A thin layer: argv -> engine -> a report rendered like Docker's. The
commands are declared with cli/argv.py, so `ketch ps` and the others here run
without importing click. `run` and `create` (sixty flags: cli/container_run.py)
and the other container commands (cli/container_more.py, cli/container_fs.py)
are loaded through this module's __getattr__, so `ketch ps` builds none of
their options.
"""

from __future__ import annotations

import json
import sys

from ketch.cli._format import echo
from ketch.cli.argv import Commands, argument, option
from ketch.errors import KetchError

# Declared with cli/argv.py: parsed without click; `ketch.cli.container:ps` &c.
# (COMMANDS, click groups) are click commands built from these on first use.
# Flags may follow the names (`ketch rm web -f`), as with Docker.
FAST = Commands()


def _conn():
    from ketch.engine import containers
    return containers.connect()


@FAST.command("start", docker_exit=True)
@option("-a", "--attach", "attach_", is_flag=True, help="Attach STDOUT/STDERR.")
@option("-i", "--interactive", is_flag=True, help="Attach container's STDIN.")
@argument("containers", nargs=-1, required=True)
def _start(attach_, interactive, containers):
    """Start one or more stopped containers."""
    from ketch.engine import containers as store
    from ketch.engine import lifecycle
    conn = _conn()
    failed = None
    for ref in containers:
        try:
            c = store.lookup(conn, ref)
            if attach_ and len(containers) == 1:
                from ketch.cli.container_run import run_attached
                sys.exit(run_attached(conn, c))
            lifecycle.start(conn, c)
            echo(ref)
        except KetchError as exc:
            failed = exc
            echo(f"ketch: {exc}", err=True)
    if failed:
        raise SystemExit(1)


def _each(refs, action, say=True):
    """Apply action(conn, container) to each ref; report errors per ref like Docker."""
    from ketch.engine import containers as store
    conn = _conn()
    rc = 0
    for ref in refs:
        try:
            action(conn, store.lookup(conn, ref))
            if say:
                echo(ref)
        except KetchError as exc:
            echo(f"ketch: {exc}", err=True)
            rc = 1
    if rc:
        raise SystemExit(rc)


@FAST.command("stop", docker_exit=True)
@option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait.")
@option("-s", "--signal", "sig", default="", help="Signal to send.")
@argument("containers", nargs=-1, required=True)
def _stop(timeout, sig, containers):
    """Stop one or more running containers."""
    from ketch.engine import lifecycle

    def act(conn, c):
        if sig:
            c.options.stop_signal = sig
        lifecycle.stop(conn, c, timeout)
    _each(containers, act)


@FAST.command("restart", docker_exit=True)
@option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait.")
@argument("containers", nargs=-1, required=True)
def _restart(timeout, containers):
    """Restart one or more containers."""
    from ketch.engine import containers as store
    from ketch.engine import lifecycle

    def act(conn, c):
        lifecycle.stop(conn, c, timeout)
        lifecycle.start(conn, store.get(conn, c.id))
    _each(containers, act)


@FAST.command("kill", docker_exit=True)
@option("-s", "--signal", "sig", default="KILL", help="Signal to send.")
@argument("containers", nargs=-1, required=True)
def _kill(sig, containers):
    """Kill one or more running containers."""
    from ketch.engine import lifecycle
    _each(containers, lambda conn, c: lifecycle.kill(conn, c, sig))


@FAST.command("rm", docker_exit=True)
@option("-f", "--force", is_flag=True, help="Force the removal of a running container.")
@option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes.")
@argument("containers", nargs=-1, required=True)
def _rm(force, volumes, containers):
    """Remove one or more containers."""
    from ketch.engine import lifecycle
    _each(containers, lambda conn, c: lifecycle.remove(conn, c, force=force,
                                                          volumes_too=volumes))


@FAST.command("wait", docker_exit=True)
@argument("containers", nargs=-1, required=True)
def _wait(containers):
    """Block until containers stop, then print their exit codes."""
    import time

    from ketch.engine import containers as store
    from ketch.engine import lifecycle

    def act(conn, c):
        while c is not None and c.status in ("running", "paused", "restarting"):
            if c.status != "restarting":
                lifecycle.wait_exit(c)
            time.sleep(0.05)
            c = store.get(conn, c.id)
        echo(c.exit_code if c is not None else 0)
    _each(containers, act, say=False)


PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
              "CreatedAt": "CREATED AT", "State": "STATE", "Size": "SIZE",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS"}
PS_FIELDS = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
PS_DEFAULT = "table " + "\t".join("{{." + f + "}}" for f in PS_FIELDS)


def _ps_filter(c, filters: list[str]) -> bool:
    for f in filters:
        key, _, val = f.partition("=")
        if key == "status" and c.status != val:
            return False
        if key == "name" and val not in c.name:
            return False
        if key == "id" and not c.id.startswith(val):
            return False
        if key == "label":
            k, eq, v = val.partition("=")
            if k not in c.options.labels or (eq and c.options.labels[k] != v):
                return False
        if key == "ancestor" and val not in (c.image, c.image_id, c.image_id[7:19]):
            return False
        if key == "exited" and (c.status != "exited" or str(c.exit_code) != val):
            return False
        if key not in ("status", "name", "id", "label", "ancestor", "exited"):
            raise KetchError(f"invalid filter '{key}'")
    return True


def _ports_of(conn, items) -> dict[str, str]:
    """Docker's PORTS text ("0.0.0.0:8080->80/tcp") of running bridged containers."""
    wanted = [c for c in items if c.running and c.options.network not in ("none", "host")]
    if not wanted:
        return {}   # spare `ps` the networking imports
    from ketch.engine import networks
    out = {}
    for c in wanted:
        try:
            mapping = networks.ports(conn, c.id)
        except Exception:  # noqa: BLE001 - a listing never fails on one container
            continue
        out[c.id] = ", ".join(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{key}"
                              for key, binds in sorted(mapping.items()) for b in binds or [])
    return out


def _sizes(conn) -> dict[str, str]:
    from ketch.engine import images
    from ketch.engine.humanize import human_size
    try:
        du = images.disk_usage(conn)
    except Exception:  # noqa: BLE001
        return {}
    return {x.get("Id", ""): human_size(x.get("SizeRw", 0)) for x in du.get("Containers", [])}


@FAST.command("ps", docker_exit=True)
@option("-a", "--all", "all_", is_flag=True, help="Show all containers.")
@option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@option("-l", "--latest", is_flag=True, help="Show the latest created container.")
@option("-n", "--last", type=int, default=-1, help="Show n last created containers.")
@option("-s", "--size", is_flag=True, help="Display total file sizes.")
@option("--no-trunc", is_flag=True, help="Don't truncate output.")
@option("-f", "--filter", "filters", multiple=True, help="Filter output.")
@option("--format", "fmt", default=None, help="Format output (Go template, table, json).")
def _ps(all_, quiet, latest, last, size, no_trunc, filters, fmt):
    """List containers."""
    from ketch.cli import _format
    from ketch.engine import containers as store
    from ketch.engine import networks, views
    conn = _conn()
    try:   # a crash's network leftovers; cheap if none
        networks.reconcile_if_needed(conn)
    except KetchError:
        pass
    items = store.all_containers(conn)
    if latest:
        last = 1
    if last >= 0:
        items, all_ = items[:last], True
    items = [c for c in items if (all_ or c.status in ("running", "paused", "restarting"))
             and _ps_filter(c, list(filters))]
    if quiet:
        echo("".join((c.id if no_trunc else c.id[:12]) + "\n" for c in items), nl=False)
        return
    rows = []
    ports = _ports_of(conn, items)
    sizes = _sizes(conn) if size else {}
    for c in items:
        row = views.ps_row(c)
        row["Ports"] = ports.get(c.id, "")
        if size:
            row["Size"] = sizes.get(c.id, "0B")
        if no_trunc:
            row["ID"] = c.id
        else:
            cmd = row["Command"]
            row["Command"] = cmd if len(cmd) <= 20 else cmd[:19] + "…"
        row["Command"] = json.dumps(row["Command"], ensure_ascii=False)
        rows.append(row)
    if fmt in (None, "", "table"):
        echo(_format.fields_table(rows, PS_FIELDS + ["Size"] * size, PS_HEADERS), nl=False)
        return
    default = PS_DEFAULT + ("\t{{.Size}}" if size else "")
    echo(_format.format_items(rows, fmt, PS_HEADERS, default), nl=False)


@FAST.command("inspect", docker_exit=True)
@option("-f", "--format", "fmt", default=None, help="Format output (Go template).")
@option("-s", "--size", is_flag=True, help="Display total file sizes.")
@option("--type", "kind", default="", help="Only container, image or volume.")
@argument("names", nargs=-1, required=True)
def _inspect(fmt, size, kind, names):
    """Return low-level information on containers, images or volumes."""
    from ketch.cli import _format
    from ketch.errors import NotFound
    docs, rc = [], 0
    for name in names:
        try:
            docs.append(_inspect_one(name, kind))
        except NotFound:
            echo(f"ketch: Error: No such object: {name}", err=True)
            rc = 1
    if fmt:
        for d in docs:
            echo(_format.render(fmt, d))
    else:
        echo(json.dumps(docs, indent=4))
    if rc:
        raise SystemExit(rc)


def _inspect_one(name: str, kind: str) -> dict:
    from ketch.engine import containers as store
    from ketch.engine import views
    from ketch.errors import NotFound
    if kind in ("", "container"):
        try:
            conn = _conn()
            c = store.lookup(conn, name)
            settings = None
            if c.options.network not in ("none", "host"):
                try:
                    from ketch.engine import networks
                    settings = networks.settings(conn, c.id)
                except Exception:  # noqa: BLE001 - networking may be absent
                    settings = None
            return views.inspect(c, settings)
        except NotFound:
            if kind:
                raise
    if kind in ("", "image"):
        try:
            from ketch.engine import images
            return images.inspect(_conn(), name)
        except NotFound:
            if kind:
                raise
    if kind in ("", "volume"):
        from ketch.engine import volumes
        return volumes.get(volumes.connect(), name)
    raise NotFound(name)


_MORE = {"run": "run", "create": "run", "attach": "more", "container": "more", "exec_": "more", "logs": "more",
         "pause": "more", "port": "more", "rename": "more", "top": "more", "unpause": "more",
         "update": "more", "commit": "fs", "cp": "fs", "diff": "fs", "export": "fs",
         "stats": "fs"}


def __getattr__(name: str):
    """Click commands: this module's, built on first use; the other container
    commands, loaded only when one of them is invoked."""
    if name in _MORE:
        import importlib
        return getattr(importlib.import_module(f"ketch.cli.container_{_MORE[name]}"), name)
    return FAST.click(name)
