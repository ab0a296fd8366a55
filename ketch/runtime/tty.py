"""The terminal of a foreground `run`: receive the pty master, relay it to our stdio.

With process.terminal and no --console-socket, `run` is the console socket's
other end itself (as runc does when it stays attached): init sends the
master over a socketpair, and this module copies our stdin to it and its
output to our stdout, in raw mode when stdin is a terminal, until the
container's init exits.
"""

from __future__ import annotations

import os
import select


def receive_master(sock: int) -> int:
    import socket
    s = socket.socket(fileno=os.dup(sock))
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(s, 4096, 1)
    finally:
        s.close()
    if not fds:
        raise OSError(5, "console: init sent no terminal")
    return fds[0]


def relay(master: int, done) -> None:
    """Copy stdin -> master and master -> stdout until `done()` and the pty is drained."""
    restore = _raw(0)
    try:
        inputs = [0, master]
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [], 0.1)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    inputs.remove(0)
            if not ready and done():
                return
    finally:
        if restore is not None:
            restore()


def _raw(fd: int):
    if not os.isatty(fd):
        return None
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)
