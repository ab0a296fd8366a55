"""SIOCGIFFLAGS/SIOCSIFFLAGS on a network interface of the caller's namespace: one
ioctl each, no netlink library (pyroute2 costs ~0.3 s to import) and no policy."""

from __future__ import annotations

import fcntl
import sys

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _ifreq(name: str, flags: int) -> bytes:
    # struct ifreq: char ifr_name[16]; short ifr_flags; padding to 40 bytes
    return name.encode().ljust(16, b"\0") + flags.to_bytes(2, sys.byteorder) + bytes(22)


def set_up(name: str = "lo") -> None:
    """Set IFF_UP on interface `name`; OSError names it."""
    import _socket  # the C module: `socket` costs a container start its enum import
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _ifreq(name, 0))
        flags = int.from_bytes(got[16:18], sys.byteorder)
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, _ifreq(name, flags | IFF_UP))
    except OSError as exc:
        raise OSError(exc.errno, f"bring up {name}: {exc.strerror}") from None
    finally:
        s.close()
