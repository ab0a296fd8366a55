"""`ketch vm console`: the caller's terminal on a full VM's serial console.

The console is QEMU's unix socket chardev; the terminal goes raw and bytes are
copied both ways until the VM stops or the user types Ctrl-] (as telnet).
"""

from __future__ import annotations

import os
import select
import socket
import sys
import termios

from ketch.errors import Conflict
from ketch.vm import fullvm

DETACH = b"\x1d"  # Ctrl-]


def attach(name: str) -> None:
    if not fullvm.pid(name):
        raise Conflict(f"VM \"{name}\" is not running")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(fullvm.vm_dir(name) / "console.sock"))
    tty = sys.stdin.isatty()
    saved = termios.tcgetattr(0) if tty else None
    if tty:
        raw = termios.tcgetattr(0)
        raw[0] = raw[1] = raw[3] = 0
        termios.tcsetattr(0, termios.TCSANOW, raw)
        os.write(2, b"[attached to the console; Ctrl-] detaches]\r\n")
    try:
        while True:
            ready, _, _ = select.select([0, sock], [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 4096)
                if not data or (tty and DETACH in data):
                    return
                sock.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()
