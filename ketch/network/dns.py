"""The embedded DNS server: 127.0.0.11:53 inside a container on a user network.

One small process per such container (`python -m ketch.network.dns`). It
starts in the host's namespace, opens its listening sockets inside the
container's namespace from a short-lived thread that setns()es there (a
socket belongs to the namespace it was created in), and keeps every other
socket in the host's namespace: forwarded queries leave from the host, as
Docker's do, so even loopback upstreams (systemd-resolved) work.

It answers A (and PTR) for the names, aliases, short ids and
<name>.<network> of the containers on the container's networks, read from JSON files the engine rewrites on every
attach/detach (reloaded when their mtime changes); AAAA for those names is
an empty NOERROR; anything else goes to the upstream servers over UDP. It
exits when the container's init dies (pidfd) or on SIGTERM. Cost: one
Python process (about 14 MB resident, 7 MB of it private) per container on a user network;
containers on the default bridge or in none/host mode have none.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import threading

TTL = 600
QTYPE_A, QTYPE_PTR, QTYPE_AAAA = 1, 12, 28


def parse_query(msg: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, qname, qtype, end of question) of a one-question query."""
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1:
        raise ValueError("expected one question")
    labels, pos = [], 12
    while True:
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0:
            raise ValueError("compressed question")
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype, _qclass = struct.unpack("!HH", msg[pos:pos + 4])
    return qid, flags, ".".join(labels).lower(), qtype, pos + 4


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def build_reply(query: bytes, qend: int, answers: list[tuple[int, bytes]],
                rcode: int = 0) -> bytes:
    """A reply echoing the question; answers are (type, rdata) for the question's name."""
    qid, flags = struct.unpack("!HH", query[:4])
    rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode  # QR, opcode, RD, AA, RA
    head = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0)
    body = query[12:qend]
    for rtype, rdata in answers:
        body += struct.pack("!HHHIH", 0xC00C, rtype, 1, TTL, len(rdata)) + rdata
    return head + body


class Names:
    """name -> addresses, from the per-network JSON files, reloaded on change."""

    def __init__(self, config_path: str):
        self.config_path = config_path
        self._stamp: tuple = ()
        self.table: dict[str, list[str]] = {}
        self.upstream: list[tuple[str, int]] = []

    def refresh(self) -> None:
        try:
            with open(self.config_path) as f:
                config = json.load(f)
        except (OSError, ValueError):
            return
        files = config.get("names", [])
        stamp = tuple(_mtime(p) for p in [self.config_path, *files])
        if stamp == self._stamp:
            return
        table: dict[str, list[str]] = {}
        for path in files:
            try:
                with open(path) as f:
                    for name, addrs in json.load(f).items():
                        table.setdefault(name.lower(), []).extend(addrs)
            except (OSError, ValueError):
                continue
        self.table, self._stamp = table, stamp
        self.upstream = [_hostport(s) for s in config.get("upstream", [])]

    def answer(self, qname: str, qtype: int) -> list[tuple[int, bytes]] | None:
        """Local answers, or None when the name is not ours (forward it)."""
        self.refresh()
        if qtype == QTYPE_PTR and qname.endswith(".in-addr.arpa"):
            addr = ".".join(reversed(qname[:-len(".in-addr.arpa")].split(".")))
            names = sorted(n for n, a in self.table.items() if addr in a)
            return [(QTYPE_PTR, encode_name(names[0]))] if names else None
        addrs = self.table.get(qname.rstrip("."))
        if addrs is None:
            return None
        if qtype == QTYPE_A:
            return [(QTYPE_A, socket.inet_aton(a)) for a in dict.fromkeys(addrs)]
        return []


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _hostport(text: str) -> tuple[str, int]:
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def listen_in_netns(netns: str, addr: str = "127.0.0.11", port: int = 53):
    """(udp, tcp) sockets bound to addr:port inside `netns`, created from a thread."""
    result: dict = {}

    def work() -> None:
        from ketch._sys import ns

        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ns.setns(fd, ns.CLONE_NEWNET, netns)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((addr, port))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((addr, port))
            tcp.listen(16)
            result["socks"] = (udp, tcp)
        except OSError as exc:
            result["error"] = exc
        finally:
            os.close(fd)

    # The thread ends in the container's namespace and dies with it; the
    # main thread never leaves the host's.
    t = threading.Thread(target=work)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["socks"]


def forward(query: bytes, upstream: list[tuple[str, int]], timeout: float = 2.0) -> bytes | None:
    for server in upstream:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            try:
                s.sendto(query, server)
                return s.recv(4096)
            except OSError:
                continue
    return None


def handle(names: Names, query: bytes) -> bytes | None:
    try:
        _qid, _flags, qname, qtype, qend = parse_query(query)
    except (ValueError, IndexError, struct.error):
        return None
    local = names.answer(qname, qtype)
    if local is not None:
        return build_reply(query, qend, local)
    reply = forward(query, names.upstream)
    return reply if reply is not None else build_reply(query, qend, [], rcode=2)


def _serve_tcp(names: Names, conn: socket.socket) -> None:
    with conn:
        conn.settimeout(2)
        try:
            size = struct.unpack("!H", conn.recv(2))[0]
            query = b""
            while len(query) < size:
                chunk = conn.recv(size - len(query))
                if not chunk:
                    return
                query += chunk
            reply = handle(names, query)
            if reply:
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except (OSError, struct.error):
            return


def serve(names: Names, udp: socket.socket, tcp: socket.socket, pid: int | None) -> None:
    # Raise out of select(): a flag would wait for the timeout, as select is
    # restarted after a handler returns (PEP 475).
    signal.signal(signal.SIGTERM, _terminate)
    watch = [udp, tcp]
    try:
        pidfd = os.pidfd_open(pid) if pid else None
    except ProcessLookupError:
        return  # the container is already gone
    if pidfd is not None:
        watch.append(pidfd)
    try:
        while True:
            ready, _, _ = select.select(watch, [], [], 60)
            if pidfd is not None and pidfd in ready:
                return
            if udp in ready:
                query, client = udp.recvfrom(4096)
                _spawn(_udp_reply, names, udp, query, client)
            if tcp in ready:
                conn, _ = tcp.accept()
                if not _spawn(_serve_tcp, names, conn):
                    conn.close()
    except _Stop:
        return


# Queries wait on upstreams in threads; a container flooding its resolver
# gets dropped queries, not an unbounded number of threads.
_SLOTS = threading.BoundedSemaphore(64)


def _spawn(fn, *args) -> bool:
    if not _SLOTS.acquire(blocking=False):
        return False

    def run() -> None:
        try:
            fn(*args)
        finally:
            _SLOTS.release()

    threading.Thread(target=run, daemon=True).start()
    return True


class _Stop(Exception):
    pass


def _terminate(*_args) -> None:
    raise _Stop


def _udp_reply(names: Names, udp: socket.socket, query: bytes, client) -> None:
    reply = handle(names, query)
    if reply:
        try:
            udp.sendto(reply, client)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ketch-dns")
    ap.add_argument("--config", required=True)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--ready-fd", type=int, default=-1)
    args = ap.parse_args(argv)
    names = Names(args.config)
    names.refresh()
    try:
        udp, tcp = listen_in_netns(args.netns)
    except OSError as exc:
        msg = f"embedded DNS: listen on 127.0.0.11:53: {exc.strerror or exc}"
        if args.ready_fd >= 0:
            os.write(args.ready_fd, msg.encode())
        print(msg, file=sys.stderr)
        return 1
    if args.ready_fd >= 0:
        os.write(args.ready_fd, b"ok")
        os.close(args.ready_fd)
    serve(names, udp, tcp, args.pid or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
