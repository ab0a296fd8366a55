"""`ketch-runv exec`: run one more process in a running micro-VM.

The process is the container's own (config.json's `process`) with the
command, environment, working directory, user and terminal the caller asks
for, as runc's exec does. The client talks frames (proto.py) with the shim
over its control socket: stdin and resizes out, output and the exit code in.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import termios
import threading

from ketch.errors import Conflict, InvalidArgument
from ketch.vm import container, proto


def _process(root, args) -> proto.Process:
    d = container.state_dir(root, args.id)
    if args.process:
        try:
            spec = json.loads(args.process.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"process file {str(args.process)!r}: {exc}") from None
        proc = proto.Process.from_oci(spec)
    else:
        if not args.command:
            raise InvalidArgument("exec: a command is required")
        base = json.loads((d / "launch.json").read_text())["process"]
        proc = proto.Process(**base)
        proc.args = list(args.command)
        proc.env = proc.env + list(args.env)
        proc.terminal = args.tty
        if args.cwd:
            proc.cwd = args.cwd
        if args.user:
            uid, _, gid = args.user.partition(":")
            if not uid.isdigit() or (gid and not gid.isdigit()):
                raise InvalidArgument(f"exec: user {args.user!r} must be UID[:GID]")
            proc.uid, proc.gid, proc.groups = int(uid), int(gid or 0), []
    proc.stdin = True
    if proc.terminal and sys.stdin.isatty():
        cols, rows = os.get_terminal_size(0)
        proc.rows, proc.cols = rows, cols
    return proc


def console_pty(path: str) -> int:
    """runc's --console-socket: send a new pty's master to the caller; return the slave."""
    master, slave = os.openpty()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        socket.send_fds(sock, [os.ttyname(slave).encode()], [master])
    except OSError as exc:
        os.close(slave)
        raise InvalidArgument(f"console socket {path!r}: {exc.strerror}") from None
    finally:
        sock.close()
        os.close(master)
    return slave


def run(root, args) -> int:
    if container.state(root, args.id)["status"] != "running":
        raise Conflict(f"container \"{args.id}\" is not running")
    proc = _process(root, args)
    fd_in, fd_out, fd_err = 0, 1, 2
    if args.console_socket:
        # The caller holds the master; our end of the pty is raw, the guest's pty cooks.
        fd_in = fd_out = fd_err = console_pty(args.console_socket)
        proc.terminal = True
        attrs = termios.tcgetattr(fd_in)
        attrs[0] = attrs[1] = attrs[3] = 0
        termios.tcsetattr(fd_in, termios.TCSANOW, attrs)
    sock = container.request(root, args.id, {"op": "exec", "process": proc.__dict__})
    if args.detach:
        sock.close()
        return 0
    raw = proc.terminal and not args.console_socket and sys.stdin.isatty()
    saved = termios.tcgetattr(0) if raw else None
    if raw:
        attrs = termios.tcgetattr(0)
        attrs[0] = attrs[1] = attrs[3] = 0
        termios.tcsetattr(0, termios.TCSANOW, attrs)

        def resized(*_):
            cols, rows = os.get_terminal_size(0)
            sock.sendall(proto.resize_frame(1, rows, cols))
        signal.signal(signal.SIGWINCH, resized)
    threading.Thread(target=_stdin, args=(sock, fd_in), daemon=True).start()
    out = {proto.STDOUT: fd_out, proto.STDERR: fd_err}
    code = 255
    try:
        reader = proto.FrameReader(sock)
        while (got := reader.read()) is not None:
            kind, _session, payload = got
            if kind in out:
                os.write(out[kind], payload)
            elif kind == proto.STARTED and args.pid_file:
                args.pid_file.write_text(str(struct.unpack("<I", payload)[0]))
            elif kind == proto.EXIT:
                code = proto.int_payload(payload)
                break
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()
    return code


def _stdin(sock, fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        try:
            sock.sendall(proto.frame(proto.STDIN, 1, data))
        except OSError:
            return
        if not data:
            return
