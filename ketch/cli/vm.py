"""`ketch vm`: the guest kernel micro-VMs boot, and the accelerator they use.

    ketch vm kernel [--install]   show the installed guest kernel; fetch it if asked
    ketch vm accel                the accelerator (KVM or TCG) and why
"""

from __future__ import annotations

import json
import os

import click


@click.group("vm")
def vm() -> None:
    """Manage micro-VM support: guest kernel and accelerator."""


@vm.command("kernel")
@click.option("--install", is_flag=True, help="Download and unpack Debian's cloud kernel (apt-get download).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def kernel(install: bool, fmt: str) -> None:
    """Show (or install) the guest kernel."""
    from ketch.vm import kernel as kernel_mod

    found = kernel_mod.current()
    if install and (found is None or found.release == "custom"):
        found = kernel_mod.install(log=lambda msg: click.echo(msg, err=True))
    elif install:
        click.echo(f"guest kernel {found.release} already installed", err=True)
    if found is None:
        click.echo(f"no guest kernel installed in {kernel_mod.cache_dir()}; "
                   f"run `{kernel_mod.INSTALL_HINT}`")
        raise SystemExit(1)
    info = {"release": found.release, "vmlinux": str(found.vmlinux),
            "modules": str(found.modules) if found.modules else None,
            "cache": str(kernel_mod.cache_dir())}
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        click.echo(f"{key.capitalize() + ':':<10} {value}")


@vm.command("accel")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def accel(fmt: str) -> None:
    """Show which accelerator micro-VMs use here, and why."""
    from ketch.vm import accel as accel_mod

    info = accel_mod.describe()
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        click.echo(f"{key.capitalize() + ':':<13} {value}")


# --- full VMs ----------------------------------------------------------------------

def _size(value: str, what: str) -> int:
    from ketch.engine.options import size_in_bytes
    from ketch.errors import InvalidArgument

    size = size_in_bytes(value)
    if size is None:
        raise InvalidArgument(f"invalid {what} {value!r} (e.g. 512m, 4g)")
    return size


def _hostfwd(publish: str) -> str:
    """Docker's -p [ip:]host:guest[/proto] as a QEMU hostfwd rule."""
    from ketch.errors import InvalidArgument

    spec, _, proto = publish.partition("/")
    parts = spec.split(":")
    if len(parts) == 2:
        parts.insert(0, "")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise InvalidArgument(f"invalid publish {publish!r} (want [ip:]hostPort:vmPort)")
    return f"{proto or 'tcp'}:{parts[0]}:{parts[1]}-:{parts[2]}"


def _with_image_rootfs(ref: str, fn):
    """Mount the image's root filesystem read-only-in-spirit for `fn(rootfs)`, then clean up."""
    import tempfile
    import uuid
    from pathlib import Path

    from ketch.engine import db, images
    from ketch.runtime import mount

    conn = db.connect()
    image = images.resolve(conn, ref)
    temp_id = "vmdisk-" + uuid.uuid4().hex[:12]
    mounts = images.prepare_rootfs(conn, image, temp_id)
    with tempfile.TemporaryDirectory(prefix="ketch-vmdisk-") as tmp:
        target = Path(tmp) / "rootfs"
        try:
            mount.mount_all(mounts, str(target))
            return fn(target)
        finally:
            mount.unmount_all(str(target))
            images.remove_rootfs(conn, temp_id)


@vm.command("create", context_settings={"ignore_unknown_options": True})
@click.option("--name", help="Name of the VM (or give it as the first argument).")
@click.option("--image", help="Image to build the disk from.")
@click.option("--cpus", default=1, type=int, show_default=True)
@click.option("--memory", default="1g", show_default=True)
@click.option("--disk", default="4g", show_default=True, help="Disk size (sparse).")
@click.option("-p", "--publish", multiple=True, help="Publish a port: [ip:]hostPort:vmPort.")
@click.option("-v", "--volume", "volumes", multiple=True, help="Share a host directory: SRC:DST[:ro].")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def create(name, image, cpus, memory, disk, publish, volumes, args):
    """Build a bootable disk from an image: NAME --image IMG, or --name NAME IMG [CMD...]."""
    from ketch.errors import InvalidArgument
    from ketch.vm import fullvm

    args = list(args)
    if name is None:
        if not args:
            raise InvalidArgument("vm create: a VM name is required")
        name = args.pop(0)
    if image is None:
        if not args:
            raise InvalidArgument("vm create: an image is required (--image or argument)")
        image = args.pop(0)
    shares = []
    for v in volumes:
        src, _, rest = v.partition(":")
        dest, _, mode = rest.partition(":")
        if not src.startswith("/") or not dest.startswith("/") or mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid volume {v!r} (want /host/dir:/vm/dir[:ro])")
        if not os.path.isdir(src):
            raise InvalidArgument(f"volume source {src!r}: no such directory")
        shares.append([src, dest, mode == "ro"])
    spec = fullvm.VmSpec(name=name, image=image, cpus=cpus, cmd=args, volumes=shares,
                         memory_mib=_size(memory, "memory") >> 20,
                         disk_bytes=_size(disk, "disk size"),
                         ports=[_hostfwd(p) for p in publish])
    fullvm.vm_dir(name, must_exist=False)          # bad names fail before any work
    _with_image_rootfs(image, lambda rootfs: fullvm.create(spec, rootfs))
    click.echo(name)


@vm.command("start")
@click.option("-a", "--attach", is_flag=True, help="Follow the console until the VM powers off.")
@click.argument("name")
def start(name, attach):
    """Boot a VM."""
    from ketch.vm import fullvm

    fullvm.start(name)
    if not attach:
        click.echo(name)
        return
    _follow(name)
    code = fullvm.exit_code(name)
    raise SystemExit(code if code is not None else 0)


def _follow(name: str) -> None:
    import sys
    import time

    from ketch.vm import fullvm

    log = fullvm.vm_dir(name) / "console.log"
    pos = 0
    while True:
        running = fullvm.pid(name) is not None
        if log.exists():
            with open(log, "rb") as f:
                f.seek(pos)
                data = f.read()
            pos += len(data)
            sys.stdout.buffer.write(data.replace(b"\r\n", b"\n"))
            sys.stdout.flush()
        if not running:
            return
        time.sleep(0.1)


@vm.command("stop")
@click.option("-t", "--time", "timeout", default=10, show_default=True, help="Seconds before killing.")
@click.argument("names", nargs=-1, required=True)
def stop(names, timeout):
    """Power VMs off (ACPI, then kill)."""
    from ketch.vm import fullvm

    for name in names:
        fullvm.stop(name, timeout)
        click.echo(name)


@vm.command("rm")
@click.option("-f", "--force", is_flag=True, help="Kill a running VM first.")
@click.argument("names", nargs=-1, required=True)
def rm(names, force):
    """Remove VMs and their disks."""
    from ketch.vm import fullvm

    for name in names:
        fullvm.remove(name, force)
        click.echo(name)


@vm.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped VMs too.")
@click.option("--format", "fmt", default=None, help="json, or a template like {{.Name}}.")
def ls(show_all, fmt):
    """List VMs."""
    from ketch.vm import fullvm

    rows = []
    for name in fullvm.names():
        spec = fullvm.load(name)
        state = fullvm.status(name)
        if show_all or state == "running":
            rows.append({"Name": name, "Status": state, "CPUs": spec.cpus,
                         "Memory": f"{spec.memory_mib}MiB", "Disk": f"{spec.disk_bytes >> 30}GiB",
                         "Image": spec.image})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt:
        for row in rows:
            out = fmt
            for key, value in row.items():
                out = out.replace("{{." + key + "}}", str(value))
            click.echo(out)
    else:
        click.echo(f"{'NAME':<20} {'STATUS':<9} {'CPUS':<5} {'MEMORY':<9} {'DISK':<7} IMAGE")
        for r in rows:
            click.echo(f"{r['Name']:<20} {r['Status']:<9} {r['CPUs']:<5} {r['Memory']:<9} "
                       f"{r['Disk']:<7} {r['Image']}")


@vm.command("logs")
@click.argument("name")
def logs(name):
    """Print the VM's console output."""
    import sys

    from ketch.vm import fullvm

    log = fullvm.vm_dir(name) / "console.log"
    if log.exists():
        sys.stdout.buffer.write(log.read_bytes().replace(b"\r\n", b"\n"))


@vm.command("console")
@click.argument("name")
def console(name):
    """Attach to the VM's serial console (detach with Ctrl-])."""
    from ketch.vm import console as console_mod

    console_mod.attach(name)


@vm.command("import-disk")
@click.argument("disk", type=click.Path(dir_okay=False))
@click.argument("name")
def import_disk(disk, name):
    """Turn a VM disk (raw or qcow2, ext4) into a container image."""
    import tarfile
    import tempfile
    from pathlib import Path

    from ketch.engine import db, images
    from ketch.vm import disk as disk_mod

    with tempfile.TemporaryDirectory(prefix="ketch-import-disk-") as tmp:
        tree = Path(tmp) / "tree"
        disk_mod.extract(Path(disk), tree)
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            for child in sorted(tree.iterdir()):
                tar.add(child, arcname=child.name)
        with open(tar_path, "rb") as stream:
            record = images.import_(db.connect(), stream, f"disk:{Path(disk).name}", name)
    click.echo(record.id)
