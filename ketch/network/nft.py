"""The nftables table ketch owns: rendered whole from the database, applied atomically.

One table (`ip ketch`, or `ip ketch_<tag>` for a non-default KETCH_ROOT, so
two roots never share rules) holds everything; no other table is touched.
Every change re-renders the table and loads it with one `nft -f -`
transaction (declare, delete, re-create), so a crash can never leave half a
ruleset and reconcile is simply "apply again". When no bridge network is
left, the table is deleted.

What the rules do (and why):
  prerouting/output  DNAT published ports when the destination is a local
                     address (`fib daddr type local`): from outside, from
                     other containers (hairpin) and from the host itself,
                     127.0.0.1 included (the bridge has route_localnet=1).
  postrouting        masquerade egress of non-internal subnets; masquerade
                     DNATed traffic that came from 127.0.0.0/8 (the source
                     is not routable on the bridge) or from the same bridge
                     (hairpin: else the reply would bypass the host).
  guard              nothing arriving from a bridge may be addressed to 127/8.
  forward            internal networks reach nothing outside their bridge;
                     different ketch networks cannot reach each other
                     except through a published port.
Published ports therefore do not pass the host's INPUT filter: DNAT happens
before it, and forwarded traffic is filtered by the FORWARD hook only.
"""

from __future__ import annotations

import shutil
import subprocess

from ketch.errors import FailedPrecondition


def _q(name: str) -> str:
    return '"' + name + '"'


def render(table: str, networks: list[dict], bindings: list[dict]) -> str:
    """The whole table. networks: {bridge, subnet, internal}; bindings: resolved ports
    plus {"container_ip", "bridge"}."""
    publish = []
    for b in bindings:
        match = "" if b["host_ip"] == "0.0.0.0" else f"ip daddr {b['host_ip']} "
        publish.append(f"{match}{b['proto']} dport {b['host_port']} "
                       f"dnat to {b['container_ip']}:{b['container_port']}")
    post, fwd = [], []
    bridges = [n["bridge"] for n in networks]
    for n in networks:
        br = _q(n["bridge"])
        if n["internal"]:
            fwd.append(f"iifname {br} oifname != {br} drop")
            fwd.append(f"oifname {br} iifname != {br} drop")
        elif n.get("masquerade", True):
            post.append(f"ip saddr {n['subnet']} oifname != {br} masquerade")
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 ct status dnat masquerade")
        # Hairpin: postrouting has no input interface, so match the source subnet.
        post.append(f"oifname {br} ip saddr {n['subnet']} ct status dnat masquerade")
    fwd.append("ct status dnat accept")
    for br in bridges:
        others = [_q(o) for o in bridges if o != br]
        if others:
            fwd.append(f"iifname {_q(br)} oifname {{ {', '.join(others)} }} drop")
    # route_localnet lets the kernel route 127/8 on our bridges; without this a
    # container able to craft packets to 127.0.0.1 would reach the host's
    # loopback services (CVE-2020-8558). Replies to DNATed host connections
    # are addressed to the gateway on the wire, so they pass.
    guard = [f"iifname {{ {', '.join(_q(b) for b in bridges)} }} ip daddr 127.0.0.0/8 drop"]
    lines = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{"]
    lines += _chain("guard", "type filter hook prerouting priority raw; policy accept;", guard)
    lines += _chain("publish", None, publish)
    lines += _chain("prerouting", "type nat hook prerouting priority dstnat; policy accept;",
                    ["fib daddr type local jump publish"])
    lines += _chain("output", "type nat hook output priority -100; policy accept;",
                    ["fib daddr type local jump publish"])
    lines += _chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;",
                    post)
    lines += _chain("forward", "type filter hook forward priority filter; policy accept;", fwd)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _chain(name: str, hook: str | None, rules: list[str]) -> list[str]:
    out = [f"  chain {name} {{"]
    if hook:
        out.append(f"    {hook}")
    out += [f"    {r}" for r in rules]
    out.append("  }")
    return out


def _nft(script: str, what: str) -> None:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    try:
        proc = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True,
                              timeout=30)
    except FileNotFoundError:
        raise FailedPrecondition(f"{what}: nft is not installed (apt-get install nftables)") \
            from None
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["failed"])[0]
        raise FailedPrecondition(f"{what}: nft: {msg}")


def apply(table: str, networks: list[dict], bindings: list[dict]) -> None:
    """Make the kernel's table equal to the rendering (or remove it if nothing needs it)."""
    if not networks:
        remove(table)
        return
    _nft(render(table, networks, bindings), f"load nftables table {table!r}")


def remove(table: str) -> None:
    # Declaring first makes the delete succeed whether or not the table existed.
    _nft(f"table ip {table} {{}}\ndelete table ip {table}\n",
         f"remove nftables table {table!r}")


def exists(table: str) -> bool:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    proc = subprocess.run([nft, "list", "table", "ip", table], capture_output=True, text=True)
    return proc.returncode == 0
