"""The micro-VM's unix sockets must fit sun_path: a too-long state dir is refused up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.errors import InvalidArgument
from ketch.vm import container


def test_the_default_state_dir_fits():
    container._check_socket_room(Path("/run/ketch/runtime") / ("a" * 64), shares=2)


def test_a_state_dir_too_long_for_the_sockets_names_the_limit():
    d = Path("/run/" + "x" * 40) / "runtime" / ("a" * 64)
    need = len(f"{d}/shim.sock")
    assert need > 107
    with pytest.raises(InvalidArgument, match=rf"too long for the micro-VM's unix sockets "
                                              rf"\({need} bytes for shim.sock, at most 107\)"):
        container._check_socket_room(d, shares=0)


def test_volume_sockets_count_too():
    d = Path("/" + "y" * 96)            # d/shim.sock is exactly 107 bytes
    container._check_socket_room(d, shares=10)   # fs9.sock is shorter
    with pytest.raises(InvalidArgument, match="fs100.sock"):
        container._check_socket_room(d, shares=101)
