"""`ketch network create|ls|inspect|rm|connect|disconnect|prune`: argv -> engine.networks."""

from __future__ import annotations

import copy
import json

import click

from ketch.cli import _format
from ketch.errors import InvalidArgument, KetchError

LS_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
LS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
              "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


def _conn():
    from ketch.engine import db

    return db.connect()


def _pairs(values: tuple[str, ...], what: str) -> dict:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {v!r}: expected key=value")
        out[key] = val if sep else ""
    return out


def _alias(cmd: click.Command) -> click.Command:
    alias = copy.copy(cmd)
    alias.hidden = True
    return alias


def _container_id(conn, ref: str) -> str:
    """A container reference as the engine knows it; the raw ref if it has no record."""
    try:
        from ketch.engine import containers
    except ImportError:
        return ref
    from ketch.engine import db

    db.ensure_schema(conn, "containers", containers.SCHEMA)  # a fresh root has no table yet
    return containers.lookup(conn, ref).id


@click.group("network")
def network() -> None:
    """Manage networks.

    \b
    What ketch changes on the host:
    - bridges (ketch0, kb-<id>) and veths (kv_<id>); nothing else is renamed
      or reconfigured;
    - one nftables table, `ip ketch`, rebuilt whole on every change and
      deleted when no bridge network is in use; no other table is touched;
    - net.ipv4.ip_forward=1 when a non-internal bridge network comes up
      (routed egress needs it; it is never turned back off), and
      route_localnet=1 and hairpin mode on ketch's own bridge and ports only.

    \b
    Published ports and the host firewall: -p is DNAT in the nat prerouting
    and output hooks, before the filter INPUT hook, so a host firewall's INPUT
    rules do not see published traffic (as with Docker); only its FORWARD
    rules do (a FORWARD policy of drop blocks it). To publish on loopback unless an address is given, set
    KETCH_PUBLISH_IP=127.0.0.1, or create the network with
    -o com.docker.network.bridge.host_binding_ipv4=127.0.0.1.
    """


@network.command("create")
@click.argument("name")
@click.option("--driver", "-d", default="bridge", help="Driver to manage the network.")
@click.option("--subnet", default=None, help="Subnet in CIDR format.")
@click.option("--gateway", default=None, help="IPv4 gateway for the subnet.")
@click.option("--ip-range", default=None, help="Allocate container addresses from a sub-range.")
@click.option("--internal", is_flag=True, help="Restrict external access to the network.")
@click.option("--label", multiple=True, help="Set metadata on a network (key=value).")
@click.option("--opt", "-o", multiple=True, help="Driver specific options (key=value).")
@click.option("--attachable", is_flag=True, hidden=True)
def create(name: str, driver: str, subnet: str | None, gateway: str | None,
           ip_range: str | None, internal: bool, label: tuple[str, ...],
           opt: tuple[str, ...], attachable: bool) -> None:
    """Create a network."""
    from ketch.engine import networks

    doc = networks.create(_conn(), name, driver=driver, subnet=subnet, gateway=gateway,
                          ip_range=ip_range, internal=internal,
                          labels=_pairs(label, "--label"), options=_pairs(opt, "--opt"))
    click.echo(doc["Id"])


def _row(doc: dict, no_trunc: bool) -> dict:
    labels = ",".join(f"{k}={v}" for k, v in sorted(doc["Labels"].items()))
    return {"ID": _format.truncate_id(doc["Id"], no_trunc), "Name": doc["Name"],
            "Driver": doc["Driver"], "Scope": doc["Scope"],
            "Internal": "true" if doc["Internal"] else "false", "Labels": labels,
            "CreatedAt": doc["Created"], "IPv6": "false"}


def _matches(doc: dict, filters: tuple[str, ...]) -> bool:
    for f in filters:
        key, _, val = f.partition("=")
        if key == "name" and val not in doc["Name"]:
            return False
        if key == "id" and not doc["Id"].startswith(val):
            return False
        if key == "driver" and doc["Driver"] != val:
            return False
        if key == "label":
            k, sep, v = val.partition("=")
            if k not in doc["Labels"] or (sep and doc["Labels"][k] != v):
                return False
        if key == "type":
            custom = doc["Name"] not in ("bridge", "host", "none")
            if (val == "custom") != custom:
                return False
        if key not in ("name", "id", "driver", "label", "type"):
            raise InvalidArgument(f"invalid filter {key!r}")
    return True


@network.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only display network IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("--filter", "-f", "filters", multiple=True, help="Filter output (name=, driver=).")
@click.option("--format", "fmt", default=None, help="Format output using a Go template.")
def ls(quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List networks."""
    from ketch.engine import networks

    conn = _conn()
    networks.reconcile(conn)
    docs = [d for d in networks.ls(conn) if _matches(d, filters)]
    docs.sort(key=lambda d: d["Name"])
    if quiet:
        for d in docs:
            click.echo(_format.truncate_id(d["Id"], no_trunc))
        return
    click.echo(_format.format_items([_row(d, no_trunc) for d in docs], fmt, LS_HEADERS,
                                    LS_DEFAULT), nl=False)


network.add_command(_alias(ls), "list")


@network.command("inspect")
@click.argument("refs", nargs=-1, required=True)
@click.option("--format", "-f", "fmt", default=None, help="Format output using a Go template.")
def inspect(refs: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more networks."""
    from ketch.engine import networks

    conn = _conn()
    docs = [networks.inspect(conn, r) for r in refs]
    if fmt:
        for d in docs:
            click.echo(_format.render(fmt, d))
    else:
        click.echo(json.dumps(docs, indent=4))


@network.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Do not error if the network does not exist.")
def rm(refs: tuple[str, ...], force: bool) -> None:
    """Remove one or more networks."""
    from ketch.engine import networks
    from ketch.errors import NotFound

    conn = _conn()
    networks.reconcile(conn)
    failed: KetchError | None = None
    for ref in refs:
        try:
            click.echo(networks.rm(conn, ref))
        except NotFound as exc:
            if not force:
                failed = exc
                click.echo(f"ketch: {exc}", err=True)
        except KetchError as exc:
            failed = exc
            click.echo(f"ketch: {exc}", err=True)
    if failed is not None:
        raise SystemExit(1)


network.add_command(_alias(rm), "remove")


@network.command("connect")
@click.argument("net")
@click.argument("container")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container.")
@click.option("--ip", default=None, help="IPv4 address (e.g. 172.30.100.104).")
@click.option("--mac-address", default=None, hidden=True)
def connect(net: str, container: str, alias: tuple[str, ...], ip: str | None,
            mac_address: str | None) -> None:
    """Connect a container to a network."""
    from ketch.engine import networks

    conn = _conn()
    networks.connect(conn, net, _container_id(conn, container),
                     {"aliases": list(alias), "ip": ip, "mac": mac_address})


@network.command("disconnect")
@click.argument("net")
@click.argument("container")
@click.option("--force", "-f", is_flag=True, help="Force the container to disconnect.")
def disconnect(net: str, container: str, force: bool) -> None:
    """Disconnect a container from a network."""
    from ketch.engine import networks

    conn = _conn()
    networks.disconnect(conn, net, _container_id(conn, container))


@network.command("prune")
@click.option("--force", "-f", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True,
              help="Provide filter values (label=<key>[=<value>], label!=..., until=24h).")
def prune(force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused networks."""
    from ketch.engine import networks

    networks.check_prune_filters(list(filters))  # refuse a bad filter before asking
    if not force and not click.confirm(
            "WARNING! This will remove all custom networks not used by at least one "
            "container.\nAre you sure you want to continue?", default=False):
        return
    conn = _conn()
    networks.reconcile(conn)
    gone = networks.prune(conn, list(filters))
    if gone:
        click.echo("Deleted Networks:")
        for name in gone:
            click.echo(name)
