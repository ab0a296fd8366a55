"""The host side of the guest agent's wire protocol (guest/agent.h is the other side).

A frame is an 8-byte header -- type (u8), zero (u8), session (u16), length
(u32), little endian -- and `length` bytes of payload. Session 0 is the VM;
the host numbers processes from 1. The same frames travel between the shim
and an `exec` client on the shim's control socket, so there is one format.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass, field

HEADER = struct.Struct("<BBHI")

# host -> guest
EXEC, STDIN, SIGNAL, RESIZE, POWEROFF, FILE, CONFIG = 1, 2, 3, 4, 5, 6, 7
# guest -> host
READY, STARTED, STDOUT, STDERR, EXIT, FATAL, TEMPLATE = 10, 11, 12, 13, 14, 15, 16

MAX_PAYLOAD = 16 << 20


def frame(kind: int, session: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, 0, session, len(payload)) + payload


def signal_frame(session: int, signo: int) -> bytes:
    return frame(SIGNAL, session, struct.pack("<I", signo))


def resize_frame(session: int, rows: int, cols: int) -> bytes:
    return frame(RESIZE, session, struct.pack("<HH", rows, cols))


def int_payload(payload: bytes) -> int:
    return struct.unpack("<i", payload[:4])[0]


def config_frames(files: list[tuple[str, str]], lines: list[str]) -> bytes:
    """What a guest restored from a snapshot waits for (guest/restore.c): the run's
    files (name under /ketch, host path), then its config with the host's clock
    and fresh randomness in front, so no two restores share either."""
    out = bytearray()
    for name, host_path in files:
        with open(host_path, "rb") as f:
            out += frame(FILE, 0, name.encode() + b"\0" + f.read())
    now = time.time_ns()
    head = [f"clock {now // 10**9} {now % 10**9}", f"entropy {os.urandom(32).hex()}"]
    return bytes(out + frame(CONFIG, 0, ("\n".join(head + lines) + "\n").encode()))


@dataclass
class Process:
    """What the agent runs: the OCI `process` object, reduced to what the guest needs."""

    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    terminal: bool = False
    stdin: bool = True
    rows: int = 24
    cols: int = 80

    @classmethod
    def from_oci(cls, proc: dict, stdin: bool = True) -> Process:
        user = proc.get("user") or {}
        size = proc.get("consoleSize") or {}
        return cls(args=list(proc.get("args") or []), env=list(proc.get("env") or []),
                   cwd=proc.get("cwd") or "/", uid=int(user.get("uid", 0)),
                   gid=int(user.get("gid", 0)),
                   groups=[int(g) for g in user.get("additionalGids") or []],
                   terminal=bool(proc.get("terminal")), stdin=stdin,
                   rows=int(size.get("height") or 24), cols=int(size.get("width") or 80))

    def encode(self) -> bytes:
        """EXEC payload: tag byte + NUL-terminated string per record (agent.c)."""
        records = [("a", a) for a in self.args] + [("e", e) for e in self.env]
        records += [("c", self.cwd), ("u", str(self.uid)), ("g", str(self.gid))]
        records += [("G", str(g)) for g in self.groups]
        records += [("t", "1" if self.terminal else "0"), ("i", "1" if self.stdin else "0"),
                    ("w", f"{self.rows} {self.cols}")]
        out = bytearray()
        for tag, value in records:
            data = value.encode()
            if b"\0" in data:
                raise ValueError(f"NUL byte in process field {value!r}")
            out += tag.encode() + data + b"\0"
        return bytes(out)


class FrameReader:
    """Read whole frames from a socket; `None` at end of stream."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = bytearray()

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = self._sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read(self) -> tuple[int, int, bytes] | None:
        if not self._fill(HEADER.size):
            return None
        kind, _zero, session, length = HEADER.unpack_from(self._buf)
        if length > MAX_PAYLOAD:
            raise ValueError(f"agent frame of {length} bytes")
        if not self._fill(HEADER.size + length):
            return None
        payload = bytes(self._buf[HEADER.size:HEADER.size + length])
        del self._buf[:HEADER.size + length]
        return kind, session, payload
