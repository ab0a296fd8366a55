"""Copying a terminal's stdio to and from a container's attach socket.

The monitor's attach socket is SOCK_SEQPACKET: each message it sends starts
with one byte naming the stream (2 stdout, 3 stderr); what we send is
written to the container's stdin. Closing our write side ends the
container's stdin, which is how `echo hi | ketch run -i ... cat` finishes.
"""

from __future__ import annotations

import _socket  # the C module (monitor.attach_socket says why)
import contextlib
import os
import select
import sys

STDOUT, STDERR = 2, 3


@contextlib.contextmanager
def raw_terminal(fd: int, enabled: bool):
    if not enabled or not os.isatty(fd):
        yield
        return
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)   # keep what was typed ahead (TCSAFLUSH drops it)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def pump(sock, *, stdin: bool, tty: bool, detach_keys: bytes = b"\x10\x11",
         on_resize=None) -> bool:
    """Copy until the container closes its output (it exited): False; or until the
    detach keys (ctrl-p ctrl-q) are typed on a tty: True, the container runs on."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    fds = [sock.fileno()]
    in_fd = sys.stdin.fileno() if stdin else -1
    if stdin:
        fds.append(in_fd)
    if tty and on_resize and os.isatty(1):
        def send_size(*_args) -> None:
            with contextlib.suppress(OSError):
                size = os.get_terminal_size(1)
                on_resize(size.lines, size.columns)
        send_size()
        import _signal
        _signal.signal(_signal.SIGWINCH, send_size)   # the user resizes the window
    pending = b""
    with raw_terminal(in_fd, stdin and tty):
        while True:
            ready, _, _ = select.select(fds, [], [])
            if sock.fileno() in ready:
                msg = sock.recv(65536)
                if not msg:
                    return False
                stream = out if msg[0] != STDERR or tty else err
                stream.write(msg[1:])
                stream.flush()
            if in_fd in ready:
                data = os.read(in_fd, 8192)
                if not data:
                    if not tty:   # a pipe's EOF closes the container's stdin
                        with contextlib.suppress(OSError):
                            sock.shutdown(_socket.SHUT_WR)
                    fds.remove(in_fd)
                    continue
                if tty:
                    pending = (pending + data)[-len(detach_keys):]
                    if pending == detach_keys:
                        return True
                sock.sendall(data)
