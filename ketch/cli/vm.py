"""`ketch vm`: the guest kernel micro-VMs boot, and the accelerator they use.

    ketch vm kernel [--install]   show the installed guest kernel; fetch it if asked
    ketch vm accel                the accelerator (KVM or TCG) and why
"""

from __future__ import annotations

import json

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
