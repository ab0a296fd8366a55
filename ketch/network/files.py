"""The /etc/hosts and /etc/resolv.conf a container sees, as Docker writes them.

resolv.conf: on a user network the embedded DNS server (127.0.0.11) is the
only nameserver and the host's (or --dns) servers become its upstreams; on
the default bridge the host's nameservers are copied, minus loopback ones
(unreachable from the container's namespace), and when none is left
Google's public resolvers are used, as Docker does. --dns-search and
--dns-option replace the host's search and options lines.
"""

from __future__ import annotations

import ipaddress
import os

from ketch.errors import FailedPrecondition, InvalidArgument

EMBEDDED_DNS = "127.0.0.11"
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]


def host_resolv(path: str = "/etc/resolv.conf") -> dict:
    """{"nameservers": [...], "search": [...], "options": [...]} of the host."""
    out: dict = {"nameservers": [], "search": [], "options": []}
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return out
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            out["nameservers"].append(fields[1])
        elif fields[0] in ("search", "domain"):
            out["search"] = fields[1:]
        elif fields[0] == "options":
            out["options"] += fields[1:]
    return out


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def check_dns(servers: list[str]) -> list[str]:
    for s in servers:
        host = s.rsplit(":", 1)[0] if s.count(":") == 1 else s
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise InvalidArgument(f"invalid --dns {s!r}: not an IP address") from None
    return servers


def upstreams(dns: list[str] | None, host: dict | None = None) -> list[str]:
    """Servers the embedded DNS forwards to (from the host's namespace: loopback is fine)."""
    host = host if host is not None else host_resolv()
    return list(dns or host["nameservers"] or FALLBACK_DNS)


def resolv_conf(embedded: bool, dns: list[str] | None = None,
                search: list[str] | None = None, options: list[str] | None = None,
                host: dict | None = None) -> str:
    host = host if host is not None else host_resolv()
    if embedded:
        servers = [EMBEDDED_DNS]
        opts = list(options if options is not None else host["options"])
        if not any(o.startswith("ndots:") for o in opts):
            opts.append("ndots:0")
    else:
        servers = [s for s in (dns or host["nameservers"]) if not _is_loopback(s)]
        servers = servers or FALLBACK_DNS
        opts = list(options if options is not None else host["options"])
    lines = []
    srch = search if search is not None else host["search"]
    if srch:
        lines.append("search " + " ".join(srch))
    lines += [f"nameserver {s}" for s in servers]
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"


def parse_extra_host(item: str) -> tuple[str, str]:
    """--add-host name:ip (also name=ip; `host-gateway` is resolved by the caller)."""
    sep = "=" if "=" in item else ":"
    name, _, addr = item.partition(sep)
    if not name or not addr:
        raise InvalidArgument(f"invalid --add-host {item!r}: expected name:ip")
    return name, addr.strip("[]")


def hosts(hostname: str, addresses: list[str], extra: list[tuple[str, str]],
          domainname: str = "", aliases: list[str] | None = None) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    lines += [f"{addr}\t{name}" for name, addr in extra]
    full = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    names = " ".join([full, *(aliases or [])])
    lines += [f"{addr}\t{names}" for addr in addresses]
    return "\n".join(lines) + "\n"


def write_in_place(path: str | None, text: str) -> None:
    """Rewrite a file keeping its inode, so a bind mount of it sees the new content."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise FailedPrecondition(f"write {path}: {exc.strerror or exc}") from exc
