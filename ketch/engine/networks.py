"""Networks, as the engine sees them: the facade over ketch/network/.

Owns the `network` tables of the database (declared in ketch.network.store)
and the order of operations that keep the host consistent with them:
bridges, veths, leases, nftables rules and embedded DNS servers.

How the container side calls in (see the interfaces contract):

    mode = networks.mode("bridge" | "none" | "host" | "container:<x>" | "<net>")
    # mode.needs_netns: create the container with a NEW netns (no path);
    # "host": no netns at all; "container:<x>": join the netns of
    # networks.netns_of(conn, x) (a /proc/<pid>/ns/net path).
    settings = networks.attach(conn, cid, "mynet", f"/proc/{pid}/ns/net", opts)
    ... runtime start ...
    networks.detach(conn, cid)          # on container removal (or stop)

Everything attach does is undone by detach, and by reconcile() after a crash.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple

from ketch.engine.containers import process_start
from ketch.errors import InvalidArgument

SPECIAL = ("bridge", "none", "host")


class Mode(namedtuple("Mode", "kind target", defaults=("",))):
    """What a --network value asks of the runtime (a named tuple: no dataclasses
    import, ~11 ms, on every `run` and `ps`).

    kind: "bridge" (default or user network), "none", "host", "container";
    target: the network name for "bridge", the container name/id for "container".
    """

    __slots__ = ()

    @property
    def needs_netns(self) -> bool:
        """True when the runtime must create a fresh network namespace."""
        return self.kind in ("bridge", "none")


def mode(network: str | None) -> Mode:
    """Classify a --network value ("" / None means the default `bridge`)."""
    value = (network or "bridge").strip()
    if value in ("none", "host"):
        return Mode(value)
    if value.startswith("container:"):
        target = value.split(":", 1)[1]
        if not target:
            raise InvalidArgument(f"invalid network mode {value!r}: container name missing")
        return Mode("container", target)
    if value == "default":
        value = "bridge"
    return Mode("bridge", value)


def attach(conn: sqlite3.Connection, container_id: str, network: str | list[str] | None,
           netns_path: str | None, opts: dict | None = None) -> dict:
    """Give a created (not yet started) container its network; return its settings.

    `network` is a --network value (or a list of them: the first is primary,
    the others must be user networks); `netns_path` is /proc/<pid>/ns/net of
    the created container (None for "host"). `opts` (all optional):

        name          container name (DNS name on user networks)
        hostname      default container_id[:12]; domainname
        aliases       --network-alias values (user networks only)
        ip, mac       --ip / --mac-address (on the primary network)
        ports         -p specs: ["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:90-91"]
        publish_all   -P: publish every `exposed` port on a free high port
        exposed       ["80/tcp", "53/udp"] (image EXPOSE + --expose)
        dns, dns_search, dns_options, extra_hosts ("name:ip")
        hosts_path, resolv_conf_path, hostname_path: files the engine bind-mounts
            into the container; attach writes their content IN PLACE (same
            inode, so a bind mount made before start sees it)

    Returns settings() (Docker's NetworkSettings) plus four keys for the caller:
        {"Bridge", "SandboxID", "SandboxKey", "EndpointID", "IPAddress", "IPPrefixLen",
         "Gateway", "MacAddress",
         "Networks": {name: {"NetworkID", "EndpointID", "IPAddress", "IPPrefixLen",
                              "Gateway", "MacAddress", "Aliases", "DNSNames"}},
         "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
         # only in attach's answer:
         "NetworkMode", "Hostname", "hosts": "<text>", "resolv_conf": "<text>"}

    Failure (port in use, bad --ip, unknown network) raises a ketch error and
    leaves nothing behind: no veth, lease, rule or DNS process.
    """
    from ketch.network import sandbox

    return sandbox.attach(_ready(conn), container_id, network, netns_path, opts or {})


def detach(conn: sqlite3.Connection, container_id: str) -> None:
    """Undo attach (and every connect): veths, leases, port rules, DNS server.

    Idempotent: detaching an unknown or already detached container is a no-op.
    """
    from ketch.network import sandbox

    sandbox.detach(_ready(conn), container_id)


def settings(conn: sqlite3.Connection, container_id: str) -> dict | None:
    """The container's NetworkSettings, as `ketch inspect` shows them, or None."""
    from ketch.network import sandbox

    return sandbox.settings(_ready(conn), container_id)


def ports(conn: sqlite3.Connection, container_id: str) -> dict:
    """{"80/tcp": [{"HostIp": ..., "HostPort": ...}]} for `ketch port`."""
    found = settings(conn, container_id)
    return (found or {}).get("Ports") or {}


def netns_of(conn: sqlite3.Connection, container: str) -> str:
    """The netns path of an attached container (name, id or id prefix), for container: mode."""
    from ketch.network import sandbox

    return sandbox.netns_of(_ready(conn), container)


def _ready(conn: sqlite3.Connection) -> sqlite3.Connection:
    from ketch.engine import db
    from ketch.network import store

    db.ensure_schema(conn, "network", store.SCHEMA)
    return conn


# -- networks as objects: `ketch network ...` ---------------------------------

def create(conn: sqlite3.Connection, name: str, *, driver: str = "bridge",
           subnet: str | None = None, gateway: str | None = None,
           ip_range: str | None = None, internal: bool = False,
           labels: dict | None = None, options: dict | None = None) -> dict:
    """Create a bridge network; return its inspect document. Bad/overlapping subnet -> error."""
    from ketch.network import manage

    return manage.create(_ready(conn), name, driver=driver, subnet=subnet, gateway=gateway,
                         ip_range=ip_range, internal=internal, labels=labels, options=options)


def ls(conn: sqlite3.Connection) -> list[dict]:
    """Inspect documents of every network, the predefined ones included."""
    from ketch.network import manage

    return manage.listing(_ready(conn))


def inspect(conn: sqlite3.Connection, ref: str) -> dict:
    from ketch.network import manage

    return manage.inspect(_ready(conn), ref)


def rm(conn: sqlite3.Connection, ref: str) -> str:
    """Remove a network; Conflict while a container uses it. Returns its name."""
    from ketch.network import manage

    return manage.remove(_ready(conn), ref)


def prune(conn: sqlite3.Connection, filters: list[str] | None = None) -> list[str]:
    """Remove unused user networks (filters: label=, label!=, until=); return names."""
    from ketch.network import manage

    return manage.prune(_ready(conn), filters)


def check_prune_filters(filters: list[str]) -> None:
    """InvalidArgument for a filter prune does not understand."""
    from ketch.network import manage

    manage.prune_filter(filters)


def connect(conn: sqlite3.Connection, network: str, container: str,
            opts: dict | None = None) -> None:
    """Connect an attached container (id, prefix or name) to one more network.

    opts: aliases, ip, mac (as for attach). Connecting twice -> Conflict.
    """
    from ketch.network import manage

    manage.connect(_ready(conn), network, container, opts)


def disconnect(conn: sqlite3.Connection, network: str, container: str) -> None:
    from ketch.network import manage

    manage.disconnect(_ready(conn), network, container)


def reconcile(conn: sqlite3.Connection, full: bool = False) -> dict:
    """Remove what a crash left: dead containers' leases/rules/DNS, orphaned veths/bridges.

    Cheap when nothing is wrong (reads /proc and /sys), so any command may
    call it first; full=True (for `system prune`) also reloads the nftables
    table and restores bridges. Returns {"containers", "veths", "bridges"}.
    """
    from ketch.network import reconcile as rec

    return rec.reconcile(_ready(conn), full)


def reconcile_if_needed(conn: sqlite3.Connection) -> dict | None:
    """reconcile() when a crash may have left network state behind; else nothing.

    For the start of `ketch run` and `ketch ps`: the common case (no sandbox
    whose container died, no stray ketch link, no vanished bridge) is decided
    from three small queries and /sys/class/net without importing
    ketch.network at all. Links of other ketch roots only make the full check
    run; it filters by this root's own name prefix.
    """
    if not _needs_reconcile(conn):
        return None
    return reconcile(conn)


def _needs_reconcile(conn: sqlite3.Connection) -> bool:
    import os

    try:
        sandboxes = conn.execute("SELECT pid, pid_start, mode FROM sandboxes").fetchall()
        veths = {r[0] for r in conn.execute("SELECT veth FROM endpoints")}
        used = {r[0] for r in conn.execute("SELECT DISTINCT network_id FROM endpoints")}
        nets = conn.execute("SELECT id, name, bridge FROM networks WHERE driver = 'bridge'")
        bridges = {r[2]: r[1] != "bridge" or r[0] in used for r in nets if r[2]}
    except sqlite3.OperationalError:   # no network table: networking never used here
        return False
    for pid, start, kind in sandboxes:   # host.alive(), without importing it
        if ((process_start(pid) or None) != start) if pid else kind != "host":
            return True
    try:
        links = set(os.listdir("/sys/class/net"))
    except OSError:
        return False
    if any(n.startswith("kv") and n not in veths for n in links):
        return True
    if any(n.startswith("kb") and n not in bridges for n in links):
        return True
    # A bridge in use that vanished (reboot), or the default one left idle by a crash.
    return any(needed != (name in links) for name, needed in bridges.items())
