"""`ketch info`, `version`, `events` and `ketch system info|df|prune|events|check|restore`."""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import click

from ketch import __version__, paths
from ketch.cli._exit import DockerCommand
from ketch.errors import KetchError

CTX = {"allow_interspersed_args": False}


def _conn():
    from ketch.engine import containers
    return containers.connect()


def _cgroup_version() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "2"
    return "1 (hybrid)" if os.path.isdir("/sys/fs/cgroup/unified") else "1"


def info_document() -> dict:
    from ketch.engine import containers, images, ocicli
    conn = _conn()
    cs = containers.all_containers(conn)
    try:
        n_images, driver = len(images.list_images(conn)), images.snapshotter_name(conn)
    except Exception as exc:  # noqa: BLE001 - a broken store still lets info report
        n_images, driver = 0, f"unknown ({exc})"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    runtimes = {}
    for name in ("runc", "vm"):
        try:
            runtimes[name] = {"path": ocicli.binary(name)}
        except KetchError:
            pass
    return {
        "Containers": len(cs),
        "ContainersRunning": sum(c.status == "running" for c in cs),
        "ContainersPaused": sum(c.status == "paused" for c in cs),
        "ContainersStopped": sum(c.status not in ("running", "paused") for c in cs),
        "Images": n_images, "Driver": driver, "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(),
        "KernelVersion": platform.release(), "OperatingSystem": _os_name(),
        "OSType": "linux", "Architecture": platform.machine(), "NCPU": os.cpu_count(),
        "MemTotal": mem, "DockerRootDir": str(paths.root()), "Name": platform.node(),
        "ServerVersion": __version__, "Runtimes": runtimes, "DefaultRuntime": "runc",
        "InitBinary": "tini-static", "SecurityOptions": ["name=seccomp,profile=builtin"],
        "MicroVM": _micro_vm(),
    }


def _micro_vm() -> dict:
    """The micro-VM accelerator as last decided; never boots a probe VM (that is
    left to the first `--runtime vm` start, which caches its verdict)."""
    try:
        from ketch.vm import accel
        found = accel.describe()
    except Exception as exc:  # noqa: BLE001 - info reports, it does not fail
        found = {"accelerator": "unknown", "reason": str(exc)}
    return {"Accelerator": found.get("accelerator", "unknown"),
            "Reason": found.get("reason", ""), "Kernel": found.get("kernel"),
            "Qemu": found.get("qemu")}


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


@click.command(context_settings=CTX)
@click.option("-f", "--format", "fmt", default=None, help="Format output (Go template).")
def info(fmt):
    """Display system-wide information."""
    from ketch.cli import _format
    doc = info_document()
    if fmt:
        click.echo(_format.render(fmt, doc))
        return
    from ketch.engine.humanize import human_size
    vm = doc["MicroVM"]
    lines = [f"Server Version: {doc['ServerVersion']}",
             f"Containers: {doc['Containers']}",
             f" Running: {doc['ContainersRunning']}", f" Paused: {doc['ContainersPaused']}",
             f" Stopped: {doc['ContainersStopped']}", f"Images: {doc['Images']}",
             f"Storage Driver: {doc['Driver']}", f"Logging Driver: {doc['LoggingDriver']}",
             f"Cgroup Driver: {doc['CgroupDriver']}", f"Cgroup Version: {doc['CgroupVersion']}",
             "Runtimes: " + " ".join(doc["Runtimes"]),
             f"Default Runtime: {doc['DefaultRuntime']}", f"Init Binary: {doc['InitBinary']}",
             f"Kernel Version: {doc['KernelVersion']}",
             f"Operating System: {doc['OperatingSystem']}", f"OSType: {doc['OSType']}",
             f"Architecture: {doc['Architecture']}", f"CPUs: {doc['NCPU']}",
             f"Total Memory: {human_size(doc['MemTotal'])}", f"Name: {doc['Name']}",
             f"Docker Root Dir: {doc['DockerRootDir']}",
             f"Micro-VM Accelerator: {vm['Accelerator']}" + (f" ({vm['Reason']})"
                                                              if vm["Reason"] else "")]
    click.echo("\n".join(lines))


@click.command(context_settings=CTX)
@click.option("-f", "--format", "fmt", default=None, help="Format output (Go template).")
def version(fmt):
    """Show the ketch version information."""
    from ketch.cli import _format
    v = {"Version": __version__, "ApiVersion": "1.43", "GoVersion": "python" +
         platform.python_version(), "Os": "linux", "Arch": platform.machine()}
    doc = {"Client": v, "Server": {**v, "KernelVersion": platform.release()}}
    if fmt:
        click.echo(_format.render(fmt, doc))
        return
    click.echo(f"Client:\n Version:\t{__version__}\n API version:\t1.43\n"
               f" Python version:\t{platform.python_version()}\n OS/Arch:\tlinux/"
               f"{platform.machine()}\n\nServer: ketch (daemonless)\n Engine:\n"
               f"  Version:\t{__version__}\n  Kernel:\t{platform.release()}")


@click.command(context_settings=CTX)
@click.option("--since", default="", help="Show events created since timestamp.")
@click.option("--until", default="", help="Stream events until this timestamp.")
@click.option("-f", "--filter", "filters", multiple=True, help="type=, event=, container=.")
@click.option("--format", "fmt", default=None, help="Format output (Go template, json).")
def events(since, until, filters, fmt):
    """Get real time events from the server."""
    from ketch.cli import _format
    from ketch.engine import events as ev
    from ketch.engine.logs import since_value
    follow = not until
    for e in ev.read(since_value(since), since_value(until), follow=follow):
        if not _match(e, filters):
            continue
        if fmt == "json":
            click.echo(json.dumps(e, separators=(",", ":")))
        elif fmt:
            click.echo(_format.render(fmt, e))
        else:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e["time"]))
            ns = e["timeNano"] % 10**9
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(e["Actor"]["Attributes"].items()))
            click.echo(f"{ts}.{ns:09d}{time.strftime('%z')} {e['Type']} {e['Action']} "
                       f"{e['Actor']['ID']} ({attrs})")
        sys.stdout.flush()


def _match(e: dict, filters) -> bool:
    for f in filters:
        key, _, val = f.partition("=")
        attrs = e["Actor"]["Attributes"]
        if key == "type" and e["Type"] != val:
            return False
        if key in ("event", "status") and e["Action"] != val:
            return False
        if key == "container" and val not in (e["Actor"]["ID"], attrs.get("name")) \
                and not e["Actor"]["ID"].startswith(val):
            return False
    return True


@click.group(context_settings=CTX)
def system():
    """Manage ketch."""


system.command_class = DockerCommand


system.add_command(info, "info")
system.add_command(events, "events")


@system.command("df")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information.")
def df(verbose):
    """Show disk usage."""
    from ketch.cli import _format
    from ketch.engine import containers, images, volumes
    from ketch.engine.humanize import human_size
    conn = _conn()
    try:
        du = images.disk_usage(conn)
    except Exception:  # noqa: BLE001 - empty store
        du = {"Images": [], "Containers": [], "LayersSize": 0}
    cs = containers.all_containers(conn)
    vols = volumes.all_volumes(volumes.connect())
    used_imgs = {c.image_id for c in cs}
    img_size = du.get("LayersSize", 0)
    c_size = sum(x.get("SizeRw", 0) for x in du.get("Containers", []))
    v_size = sum(volumes.disk_usage(v["Name"]) for v in vols)
    rows = [["Images", len(du.get("Images", [])),
             sum(i.get("Id") in used_imgs for i in du.get("Images", [])),
             human_size(img_size), human_size(sum(
                 i.get("UniqueSize", 0) for i in du.get("Images", [])
                 if i.get("Id") not in used_imgs))],
            ["Containers", len(cs), sum(c.running for c in cs), human_size(c_size),
             human_size(0)],
            ["Local Volumes", len(vols), sum(bool(volumes.users(conn, v["Name"])) for v in vols),
             human_size(v_size), human_size(0)]]
    click.echo(_format.table(rows, ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]), nl=False)


@system.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images.")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
def prune(all_, volumes, force):
    """Remove unused data: stopped containers, unused networks, dangling images."""
    from ketch.engine import containers, images, lifecycle
    from ketch.engine import volumes as vol
    conn = _conn()
    for c in containers.all_containers(conn):
        if c.status in ("exited", "created", "dead"):
            lifecycle.remove(conn, c)
            click.echo(f"Deleted Container: {c.id}")
    try:
        from ketch.engine import networks
        networks.reconcile(conn, full=True)   # after a crash: veths, leases, rules, bridges
        for n in networks.prune(conn):
            click.echo(f"Deleted Network: {n}")
    except ImportError:
        pass
    removed, reclaimed = images.prune(conn, all_)
    for r in removed:
        click.echo(f"Deleted Image: {r.get('Deleted') or r.get('Untagged') or r}")
    if volumes:
        for v in vol.prune(vol.connect()):
            click.echo(f"Deleted Volume: {v}")
    from ketch.engine.humanize import human_size
    click.echo(f"\nTotal reclaimed space: {human_size(reclaimed)}")


@system.command("check")
def check():
    """Check the consistency of the store and the containers' state."""
    from ketch.engine import containers, images
    conn = _conn()
    problems = list(images.check(conn))
    for c in containers.all_containers(conn):
        if not (paths.root() / "containers" / c.id).is_dir():
            problems.append(f"container {c.id[:12]}: bundle directory is missing")
    for p in problems:
        click.echo(p)
    if problems:
        raise SystemExit(1)
    click.echo("ok")


@system.command("restore")
def restore():
    """After a reboot: mark dead containers exited, start restart=always ones again."""
    from ketch.engine import restart
    for cid in restart.restore(_conn()):
        click.echo(cid)
