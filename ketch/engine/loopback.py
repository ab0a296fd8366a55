"""`--network none`: the container gets a network namespace with only `lo`, and up.

Docker's none network has a working 127.0.0.1. The kernel gives `lo` its
addresses as soon as it is up, so one SIOCSIFFLAGS from inside the
namespace is all it takes. setns(CLONE_NEWNET) changes only the calling
thread's namespace, so a short-lived thread does it and takes the change
with it when it ends; this avoids loading a netlink library (pyroute2 costs
~0.3 s to import) for one flag.
"""

from __future__ import annotations

import fcntl
import os
import struct

from ketch._sys import ns
from ketch.errors import KetchError

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _up_in(ns_path: str, errors: list[BaseException]) -> None:
    try:
        fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ns.setns(fd, ns.CLONE_NEWNET)
        finally:
            os.close(fd)
        import _socket  # the C types: `socket` and `threading` cost a start ~3 ms here
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        try:
            req = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
        finally:
            s.close()
    except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
        errors.append(exc)


def loopback_up(pid: int) -> None:
    """Bring up `lo` in the network namespace of process `pid`."""
    import _thread
    errors: list[BaseException] = []
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            _up_in(f"/proc/{pid}/ns/net", errors)
        finally:
            done.release()
    _thread.start_new_thread(run, ())
    done.acquire()   # the thread (and its namespace) ends right after
    if errors:
        exc = errors[0]
        raise KetchError(f"bring up lo in the container: {getattr(exc, 'strerror', exc)}")
